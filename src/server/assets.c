/* server/assets.c: the web UI's static files and the OpenAPI document, embedded in the binary
 * (the UI works offline and needs no files beside the binary). The assembler includes each file
 * from src/server/web/ at build time (the Makefile makes this object depend on them). */
#include <pthread.h>
#include <string.h>

#include "server_internal.h"

#define ASSET(sym, file)                                                                                   \
    __asm__(".section .rodata\n"                                                                           \
            ".global ft_asset_" #sym "\n.type ft_asset_" #sym ", @object\n.balign 16\n"                    \
            "ft_asset_" #sym ":\n.incbin \"" file "\"\n"                                                   \
            ".global ft_asset_" #sym "_end\nft_asset_" #sym "_end:\n.byte 0\n.previous\n");                \
    extern const unsigned char ft_asset_##sym[], ft_asset_##sym##_end[];

ASSET(index_html, "src/server/web/index.html")
ASSET(app_js, "src/server/web/app.js")
ASSET(app_css, "src/server/web/app.css")
ASSET(favicon_svg, "src/server/web/favicon.svg")
ASSET(openapi_json, "src/server/web/openapi.json")

static srv_asset assets[5];
static pthread_once_t assets_once = PTHREAD_ONCE_INIT;

static void assets_init(void) {
    static const char *const paths[] = {"/", "/app.js", "/app.css", "/favicon.svg", "/api/openapi.json"};
    static const char *const types[] = {"text/html; charset=utf-8", "text/javascript; charset=utf-8",
                                        "text/css; charset=utf-8", "image/svg+xml", "application/json"};
    const unsigned char *starts[] = {ft_asset_index_html, ft_asset_app_js, ft_asset_app_css, ft_asset_favicon_svg,
                                     ft_asset_openapi_json};
    const unsigned char *ends[] = {ft_asset_index_html_end, ft_asset_app_js_end, ft_asset_app_css_end,
                                   ft_asset_favicon_svg_end, ft_asset_openapi_json_end};
    for (size_t i = 0; i < 5; i++)
        assets[i] = (srv_asset){paths[i], types[i], starts[i], (size_t)(ends[i] - starts[i])};
}

const srv_asset *srv_asset_find(const char *path) {
    pthread_once(&assets_once, assets_init);
    if (!strcmp(path, "/index.html"))
        path = "/";
    for (size_t i = 0; i < 5; i++)
        if (!strcmp(path, assets[i].path))
            return &assets[i];
    return NULL;
}
