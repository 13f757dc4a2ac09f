/* tests/server/http_client.c: see http_client.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"

/* ---------------------------------------------------------------- a small HTTP client */



void http_resp_free(http_resp *r) {
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* One request with Connection: close; `extra` are more header lines ("K: V\r\n"). The body is
 * read to the end of the connection (chunked bodies are de-chunked). */
int http(int port, const char *method, const char *path, const char *extra, const char *body, size_t body_len,
                http_resp *out) {
    memset(out, 0, sizeof *out);
    int fd = connect_port(port);
    if (fd < 0)
        return -1;
    char head[4096];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s", method, path, extra ? extra : "",
                      body ? "" : "\r\n");
    bool ok = send_all(fd, head, (size_t)hn);
    if (ok && body) {
        char cl[64];
        int cn = snprintf(cl, sizeof cl, "Content-Length: %zu\r\n\r\n", body_len);
        ok = send_all(fd, cl, (size_t)cn) && send_all(fd, body, body_len);
    }
    ft_buf in = {0};
    char buf[65536];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ft_buf_append(&in, buf, (size_t)r);
    }
    close(fd);
    const char *all = ft_buf_cstr(&in);
    const char *sep = strstr(all, "\r\n\r\n");
    if (!sep || sscanf(all, "HTTP/1.%*d %d", &out->status) != 1) {
        ft_buf_free(&in);
        return -1;
    }
    out->headers = strndup(all, (size_t)(sep - all));
    const char *b = sep + 4;
    size_t blen = in.len - (size_t)(b - all);
    if (strcasestr(out->headers, "Transfer-Encoding: chunked")) {
        ft_buf dec = {0};
        const char *p = b, *end = b + blen;
        while (p < end) {
            char *e;
            unsigned long n = strtoul(p, &e, 16);
            const char *nl = strstr(e, "\r\n");
            if (!nl || n == 0)
                break;
            p = nl + 2;
            if ((size_t)(end - p) < n)
                n = (unsigned long)(end - p);
            ft_buf_append(&dec, p, n);
            p += n + 2;
        }
        out->body = strndup(ft_buf_cstr(&dec), dec.len);
        out->body_len = dec.len;
        ft_buf_free(&dec);
    } else {
        out->body = malloc(blen + 1);
        memcpy(out->body, b, blen);
        out->body[blen] = 0;
        out->body_len = blen;
    }
    ft_buf_free(&in);
    (void)ok;
    return 0;
}

json_t *get_json(int port, const char *path, const char *extra, int *status) {
    http_resp r;
    if (http(port, "GET", path, extra, NULL, 0, &r) != 0) {
        *status = -1;
        return NULL;
    }
    *status = r.status;
    json_t *j = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    return j;
}

json_t *post_json(int port, const char *path, const char *body, int *status) {
    http_resp r;
    if (http(port, "POST", path, "Content-Type: application/json\r\n", body, strlen(body), &r) != 0) {
        *status = -1;
        return NULL;
    }
    *status = r.status;
    json_t *j = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    return j;
}

const char *err_code(json_t *j) {
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}
const char *err_field(json_t *j) {
    return json_string_value(json_object_get(json_object_get(j, "error"), "field"));
}

/* ---------------------------------------------------------------- event streams */



/* Open a follow stream; false when the response is not 200 text/event-stream. */
bool sse_open(sse_client *c, int port, const char *run, int64_t last_id) {
    memset(c, 0, sizeof *c);
    c->fd = connect_port(port);
    if (c->fd < 0)
        return false;
    char rq[512];
    char lei[64] = "";
    if (last_id >= 0)
        snprintf(lei, sizeof lei, "Last-Event-ID: %lld\r\n", (long long)last_id);
    int n = snprintf(rq, sizeof rq, "GET /api/runs/%s/events?follow=1 HTTP/1.1\r\nHost: localhost\r\n%s\r\n", run, lei);
    return send_all(c->fd, rq, (size_t)n);
}

/* The next SSE frame's id (-1: an `end` frame, -2: the connection ended or timed out). Frames
 * without data (retry, comments) are skipped. */
int64_t sse_next(sse_client *c, char *type, size_t cap) {
    for (;;) {
        const char *all = ft_buf_cstr(&c->buf);
        const char *start = all + c->pos;
        const char *hdr_end = c->pos == 0 ? strstr(all, "\r\n\r\n") : NULL;
        if (c->pos == 0 && hdr_end) {
            c->pos = (size_t)(hdr_end + 4 - all);
            continue;
        }
        const char *e = c->pos ? strstr(start, "\n\n") : NULL;
        if (e) {
            /* chunked framing: skip chunk-size lines (hex digits alone on a line) */
            char frame[8192];
            size_t fl = (size_t)(e - start);
            if (fl >= sizeof frame)
                fl = sizeof frame - 1;
            memcpy(frame, start, fl);
            frame[fl] = 0;
            c->pos = (size_t)(e + 2 - all);
            const char *id = strstr(frame, "id: ");
            const char *data = strstr(frame, "data: ");
            if (strstr(frame, "event: end"))
                return -1;
            if (id && data) {
                const char *t = strstr(data, "\"type\":\"");
                if (t && type)
                    snprintf(type, cap, "%.*s", (int)strcspn(t + 8, "\""), t + 8);
                return strtoll(id + 4, NULL, 10);
            }
            continue;
        }
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, 20000) <= 0)
            return -2;
        char b[4096];
        ssize_t r = recv(c->fd, b, sizeof b, 0);
        if (r <= 0)
            return -2;
        ft_buf_append(&c->buf, b, (size_t)r);
    }
}

void sse_close(sse_client *c) {
    if (c->fd >= 0)
        close(c->fd);
    ft_buf_free(&c->buf);
}


json_t *delete_json(int port, const char *path, int *status) {
    http_resp r;
    if (http(port, "DELETE", path, NULL, NULL, 0, &r) != 0) {
        *status = -1;
        return NULL;
    }
    *status = r.status;
    json_t *j = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    return j;
}
