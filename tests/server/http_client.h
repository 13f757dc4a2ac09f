/* tests/server/http_client.h: a small HTTP/1.1 client over loopback sockets for the server tests:
 * one request per connection, and Server-Sent Event streams read frame by frame. */
#ifndef FTUNE_TESTS_HTTP_CLIENT_H
#define FTUNE_TESTS_HTTP_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ftune/base.h"

typedef struct http_resp {
    int status;
    char *headers; /* raw header block */
    char *body;
    size_t body_len;
} http_resp;
void http_resp_free(http_resp *r);
int connect_port(int port);
bool send_all(int fd, const char *p, size_t n);
/* One request with Connection: close; `extra` are more header lines ("K: V\r\n"); the body (may
 * be NULL) is sent with its Content-Length. 0 when a response came. */
int http(int port, const char *method, const char *path, const char *extra, const char *body, size_t body_len,
         http_resp *out);
json_t *get_json(int port, const char *path, const char *extra, int *status);
json_t *post_json(int port, const char *path, const char *body, int *status);
json_t *delete_json(int port, const char *path, int *status);
const char *err_code(json_t *j);
const char *err_field(json_t *j);

typedef struct sse_client {
    int fd;
    ft_buf buf;
    size_t pos;
} sse_client;
/* Open a follow stream of run `run` (Last-Event-ID `last_id` when >= 0). */
bool sse_open(sse_client *c, int port, const char *run, int64_t last_id);
/* The next event's id; -1 at the `end` frame, -2 when the connection ended or 20 s passed. */
int64_t sse_next(sse_client *c, char *type, size_t cap);
void sse_close(sse_client *c);

#endif
