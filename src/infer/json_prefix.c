/* infer/json_prefix.c: an incremental check that text is a prefix of one JSON object (RFC 8259),
 * for constrained decoding (response_format json_object): the engine feeds each candidate
 * token's text to a copy of the state and keeps the token only when the text stays a valid
 * prefix; a stop id is allowed only once the object is complete. Runs of white space between
 * tokens are capped (a model must not pad forever), and so are the nesting depth and the digits
 * of a number (at most 15, exponents of two: a text every JSON parser reads as a finite double). */
#include <string.h>

#include "infer_internal.h"

enum { M_START, M_VALUE, M_KEY_OR_END, M_KEY, M_COLON, M_AFTER, M_STR, M_ESC, M_HEX, M_NUM, M_LIT, M_DONE };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { MAX_WS = 4 };

void infer_json_init(infer_json *j) {
    memset(j, 0, sizeof *j);
    j->mode = M_START;
}

bool infer_json_done(const infer_json *j) { return j->mode == M_DONE; }

static bool ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static bool digit(char c) { return c >= '0' && c <= '9'; }

/* after a complete value: back to the container, or done at the top */
static void value_end(infer_json *j) { j->mode = j->depth == 0 ? M_DONE : M_AFTER; }

static bool open_container(infer_json *j, char c) {
    if (j->depth >= INFER_JSON_DEPTH)
        return false;
    j->stack[j->depth++] = c == '{' ? 'o' : 'a';
    j->mode = c == '{' ? M_KEY_OR_END : M_VALUE;
    j->empty_ok = c == '[';
    return true;
}

static bool close_container(infer_json *j, char c) {
    if (j->depth == 0 || j->stack[j->depth - 1] != (c == '}' ? 'o' : 'a'))
        return false;
    j->depth--;
    value_end(j);
    return true;
}

/* One character at a value's start (mode M_VALUE or M_START). */
static bool start_value(infer_json *j, char c) {
    if (j->mode == M_START && c != '{')
        return false; /* json_object: the top level is an object */
    if (c == '{' || c == '[')
        return open_container(j, c);
    if (c == '"') {
        j->mode = M_STR, j->is_key = false;
        return true;
    }
    if (c == '-' || digit(c)) {
        j->mode = M_NUM, j->num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
        j->num_len = c == '-' ? 0 : 1, j->exp_len = 0;
        return true;
    }
    const char *lit = c == 't' ? "true" : c == 'f' ? "false" : c == 'n' ? "null" : NULL;
    if (!lit)
        return false;
    j->mode = M_LIT, j->lit = lit, j->lit_at = 1;
    return true;
}

/* Whether the number so far is complete (may end here). */
static bool num_complete(int n) { return n == N_ZERO || n == N_INT || n == N_FRAC || n == N_EXP; }

static bool step(infer_json *j, char c) {
    if (ws(c) && (j->mode == M_START || j->mode == M_VALUE || j->mode == M_KEY_OR_END || j->mode == M_KEY ||
                  j->mode == M_COLON || j->mode == M_AFTER || j->mode == M_DONE)) {
        if (j->mode == M_DONE)
            return false; /* nothing after the object */
        return ++j->ws_run <= MAX_WS;
    }
    if (j->mode != M_STR && j->mode != M_ESC && j->mode != M_HEX)
        j->ws_run = 0;
    switch (j->mode) {
    case M_START:
    case M_VALUE:
        if (c == ']') { /* only right after '[' */
            if (!j->empty_ok)
                return false;
            j->empty_ok = false;
            return close_container(j, c);
        }
        j->empty_ok = false;
        return start_value(j, c);
    case M_KEY_OR_END:
        if (c == '}')
            return close_container(j, c);
        /* fall through */
    case M_KEY:
        if (c != '"')
            return false;
        j->mode = M_STR, j->is_key = true;
        return true;
    case M_COLON:
        if (c != ':')
            return false;
        j->mode = M_VALUE, j->empty_ok = false;
        return true;
    case M_AFTER:
        if (c == ',') {
            bool obj = j->stack[j->depth - 1] == 'o';
            j->mode = obj ? M_KEY : M_VALUE;
            j->empty_ok = false;
            return true;
        }
        if (c == '}' || c == ']')
            return close_container(j, c);
        return false;
    case M_STR:
        if (c == '"') {
            if (j->is_key)
                j->mode = M_COLON;
            else
                value_end(j);
            return true;
        }
        if (c == '\\') {
            j->mode = M_ESC;
            return true;
        }
        return (unsigned char)c >= 0x20; /* control characters must be escaped */
    case M_ESC:
        if (c == 'u') {
            j->mode = M_HEX, j->hex = 4;
            return true;
        }
        if (!strchr("\"\\/bfnrt", c) || !c)
            return false;
        j->mode = M_STR;
        return true;
    case M_HEX:
        if (!(digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
        if (--j->hex == 0)
            j->mode = M_STR;
        return true;
    case M_LIT:
        if (c != j->lit[j->lit_at])
            return false;
        if (!j->lit[++j->lit_at])
            value_end(j);
        return true;
    case M_NUM:
        /* numbers every client parses exactly enough: at most 15 digits, exponents of 2 */
        if (digit(c) && (++j->num_len > 15 || (j->num == N_EXP && j->exp_len++ >= 2) ||
                         ((j->num == N_E || j->num == N_ESIGN) && (j->exp_len = 1) == 0)))
            return false;
        switch (j->num) {
        case N_MINUS:
            if (!digit(c))
                return false;
            j->num = c == '0' ? N_ZERO : N_INT;
            return true;
        case N_ZERO:
        case N_INT:
            if (digit(c) && j->num == N_INT)
                return true;
            if (c == '.') {
                j->num = N_DOT;
                return true;
            }
            if (c == 'e' || c == 'E') {
                j->num = N_E;
                return true;
            }
            break;
        case N_DOT:
            if (!digit(c))
                return false;
            j->num = N_FRAC;
            return true;
        case N_FRAC:
            if (digit(c))
                return true;
            if (c == 'e' || c == 'E') {
                j->num = N_E;
                return true;
            }
            break;
        case N_E:
            if (c == '+' || c == '-') {
                j->num = N_ESIGN;
                return true;
            }
            /* fall through */
        case N_ESIGN:
            if (!digit(c))
                return false;
            j->num = N_EXP;
            return true;
        case N_EXP:
            if (digit(c))
                return true;
            break;
        }
        if (!num_complete(j->num))
            return false;
        value_end(j); /* the number ended: c belongs to what follows */
        return step(j, c);
    case M_DONE:
        return false;
    }
    return false;
}

bool infer_json_feed(infer_json *j, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!step(j, s[i]))
            return false;
    return true;
}
