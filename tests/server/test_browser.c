/* tests/server: the web UI in Debian's Chromium, driven by npm playwright-core
 * (tests/server/browser.mjs: pages without console errors or requests leaving localhost, the
 * loss chart equal to the metrics API and not blank, the events list equal to the events API,
 * inline form errors, the token dialog). Screenshots go to build/test-artifacts/ui/. Runs in
 * the optimized pass of `make test`; `make deps` installs chromium and playwright-core. */
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

TEST(server_web_ui_in_chromium) {
    if (ft_test_sanitized())
        SKIP("the browser test runs once, in the optimized pass (the binary it drives is the same code)");
    if (access("/usr/bin/chromium", X_OK) != 0)
        SKIP("/usr/bin/chromium is missing: `make deps` installs Debian's chromium");
    if (access("tools/npm/node_modules/playwright-core/package.json", R_OK) != 0)
        SKIP("npm playwright-core is missing: `make deps` installs it into tools/npm");
    if (system("node --version >/dev/null 2>&1") != 0)
        SKIP("node is missing: `make deps` installs it");
    char *bin = realpath(ft_test_ftune_bin(), NULL);
    REQUIRE(bin);
    char *cmd = ft_asprintf("node tests/server/browser.mjs '%s' '%s' build/test-artifacts/ui 2>&1", bin, ft_test_tmpdir());
    char *out = NULL;
    int rc = ft_test_run(cmd, &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "browser test failed (exit %d):\n%s", rc, out ? out : "");
    free(out);
    ft_free(cmd);
    free(bin);
}
