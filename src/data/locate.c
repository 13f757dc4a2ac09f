/* data/locate.c: a position-recording JSON scanner, used only after jansson has accepted (or
 * rejected) a record, to turn "this value is wrong" into a column. It follows RFC 8259 token
 * shapes leniently: it never decides validity, it only finds where things start. */
#include <string.h>

#include "data/data_internal.h"

#define LOC_MAX_DEPTH 4096

typedef struct scan {
    const char *s;
    size_t n, i;
    json_loc *loc;
    int depth;
} scan;

static void skip_ws(scan *c) {
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        c->i++;
}

static int32_t new_node(scan *c, int32_t parent, char type) {
    json_loc *l = c->loc;
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 32;
        json_loc_node *p = ft_realloc(l->nodes, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        l->nodes = p;
        l->cap = cap;
    }
    json_loc_node *nd = &l->nodes[l->n];
    memset(nd, 0, sizeof *nd);
    nd->start = (int64_t)c->i;
    nd->key_start = -1;
    nd->parent = parent;
    nd->type = type;
    return l->n++;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool hex4(const char *s, size_t n, size_t i, uint32_t *out) {
    if (i + 4 > n)
        return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(s[i + (size_t)k]);
        if (h < 0)
            return false;
        v = v * 16 + (uint32_t)h;
    }
    *out = v;
    return true;
}

/* A string at c->i (on its opening quote); decoded into `dec` when non-NULL. */
static bool scan_string(scan *c, ft_buf *dec) {
    c->i++;
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch == '"') {
            c->i++;
            return true;
        }
        if (ch != '\\') {
            if (dec && ft_buf_putc(dec, ch) != FT_OK)
                return false;
            c->i++;
            continue;
        }
        if (c->i + 1 >= c->n)
            return false;
        char e = c->s[c->i + 1];
        c->i += 2;
        char out = 0;
        switch (e) {
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!hex4(c->s, c->n, c->i, &cp))
                return false;
            c->i += 4;
            uint32_t lo;
            if (cp >= 0xD800 && cp < 0xDC00 && c->i + 6 <= c->n && c->s[c->i] == '\\' && c->s[c->i + 1] == 'u' &&
                hex4(c->s, c->n, c->i + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                c->i += 6;
            }
            if (dec) {
                char u[4];
                int k = ft_utf8_encode(cp, u);
                if (ft_buf_append(dec, u, (size_t)k) != FT_OK)
                    return false;
            }
            continue;
        }
        default: out = e; break; /* \" \\ \/ (and anything else, leniently) */
        }
        if (dec && ft_buf_putc(dec, out) != FT_OK)
            return false;
    }
    return false;
}

static bool scan_value(scan *c, int32_t parent, int32_t *out);

static bool scan_container(scan *c, int32_t me, bool object) {
    char close = object ? '}' : ']';
    c->i++;
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        return true;
    }
    for (;;) {
        skip_ws(c);
        int64_t key_start = -1, key_off = 0, key_len = 0;
        if (object) {
            if (c->i >= c->n || c->s[c->i] != '"')
                return false;
            key_start = (int64_t)c->i;
            key_off = (int64_t)c->loc->keys.len;
            if (!scan_string(c, &c->loc->keys))
                return false;
            key_len = (int64_t)c->loc->keys.len - key_off;
            skip_ws(c);
            if (c->i >= c->n || c->s[c->i] != ':')
                return false;
            c->i++;
            skip_ws(c);
        }
        int32_t child;
        if (!scan_value(c, me, &child))
            return false;
        if (object) {
            c->loc->nodes[child].key_start = key_start;
            c->loc->nodes[child].key_off = key_off;
            c->loc->nodes[child].key_len = key_len;
        }
        skip_ws(c);
        if (c->i >= c->n)
            return false;
        if (c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->s[c->i] == close) {
            c->i++;
            return true;
        }
        return false;
    }
}

static bool scan_value(scan *c, int32_t parent, int32_t *out) {
    skip_ws(c);
    if (c->i >= c->n)
        return false;
    char ch = c->s[c->i];
    char type = ch == '{' ? '{' : ch == '[' ? '[' : ch == '"' ? '"' : (ch == '-' || (ch >= '0' && ch <= '9')) ? 'n' : 'l';
    int32_t me = new_node(c, parent, type);
    if (me < 0)
        return false;
    *out = me;
    bool ok = true;
    if (type == '{' || type == '[') {
        if (++c->depth > LOC_MAX_DEPTH)
            return false;
        ok = scan_container(c, me, type == '{');
        c->depth--;
    } else if (type == '"') {
        ok = scan_string(c, NULL);
    } else {
        size_t j = c->i;
        while (j < c->n && (strchr("+-.eE", c->s[j]) || (c->s[j] >= '0' && c->s[j] <= '9') ||
                            (c->s[j] >= 'a' && c->s[j] <= 'z')))
            j++;
        if (j == c->i)
            return false;
        c->i = j;
    }
    c->loc->nodes[me].end = (int64_t)c->i;
    return ok;
}

bool json_loc_build(json_loc *loc, const char *text, size_t len) {
    memset(loc, 0, sizeof *loc);
    scan c = {text, len, 0, loc, 0};
    int32_t root;
    if (!scan_value(&c, -1, &root))
        return false;
    /* children lists, contiguous per parent (nodes are in document order) */
    loc->children = ft_malloc((size_t)(loc->n > 0 ? loc->n : 1) * sizeof *loc->children);
    int32_t *fill = ft_calloc((size_t)(loc->n > 0 ? loc->n : 1), sizeof *fill);
    if (!loc->children || !fill) {
        ft_free(fill);
        return false;
    }
    for (int32_t k = 1; k < loc->n; k++)
        loc->nodes[loc->nodes[k].parent].n_children++;
    int32_t off = 0;
    for (int32_t k = 0; k < loc->n; k++) {
        loc->nodes[k].first_child = off;
        off += loc->nodes[k].n_children;
    }
    for (int32_t k = 1; k < loc->n; k++) {
        int32_t p = loc->nodes[k].parent;
        loc->children[loc->nodes[p].first_child + fill[p]++] = k;
    }
    ft_free(fill);
    loc->ok = true;
    return true;
}

void json_loc_free(json_loc *loc) {
    ft_free(loc->nodes);
    ft_free(loc->children);
    ft_buf_free(&loc->keys);
    memset(loc, 0, sizeof *loc);
}

int32_t json_loc_member(const json_loc *loc, int32_t node, const char *key) {
    if (!loc->ok || node < 0 || node >= loc->n || loc->nodes[node].type != '{')
        return -1;
    size_t kl = strlen(key);
    const json_loc_node *nd = &loc->nodes[node];
    for (int32_t i = 0; i < nd->n_children; i++) {
        const json_loc_node *ch = &loc->nodes[loc->children[nd->first_child + i]];
        if ((size_t)ch->key_len == kl && (kl == 0 || memcmp(loc->keys.data + ch->key_off, key, kl) == 0))
            return loc->children[nd->first_child + i];
    }
    return -1;
}

int32_t json_loc_child(const json_loc *loc, int32_t node, int64_t i) {
    if (!loc->ok || node < 0 || node >= loc->n || i < 0 || i >= loc->nodes[node].n_children)
        return -1;
    return loc->children[loc->nodes[node].first_child + (int32_t)i];
}

int64_t json_loc_token_start(const char *s, size_t n, int64_t pos) {
    int64_t target = pos > 0 ? pos - 1 : 0, last = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        if (i >= n)
            break;
        size_t start = i;
        if (s[i] == '"') {
            i++;
            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            if (i < n)
                i++;
        } else if (strchr("{}[]:,", s[i])) {
            i++;
        } else {
            while (i < n && !strchr("{}[]:,\" \t\r\n", s[i]))
                i++;
        }
        last = (int64_t)start;
        if ((int64_t)i > target)
            return (int64_t)start;
    }
    return last;
}
