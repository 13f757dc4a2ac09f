/* base/file.c: whole-file reads, crash-safe writes (temp + fsync + rename + fsync parent),
 * folder helpers, $FTUNE_HOME and the /Volumes mapping of SPEC §1. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/base.h"

ft_status ft_file_read_all(const char *path, char **data, size_t *len, ft_err *err) {
    *data = NULL;
    if (len)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, path, 0, 0, "cannot open: %s",
                         strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ft_status s = FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot read: %s", strerror(errno));
        close(fd);
        return s;
    }
    if (S_ISDIR(st.st_mode)) { /* a user's input mistake (exit 2), not a failure of the machine */
        close(fd);
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "is a folder, not a file");
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = ft_malloc(cap);
    if (!buf) {
        close(fd);
        return FT_ERR_AT(err, FT_ERR_NOMEM, path, 0, 0, "out of memory reading %zu bytes", cap);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = ft_realloc(buf, cap * 2);
            if (!nb) {
                ft_free(buf);
                close(fd);
                return FT_ERR_AT(err, FT_ERR_NOMEM, path, 0, 0, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ft_free(buf);
            close(fd);
            return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "read failed: %s", strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    if (len)
        *len = n;
    return FT_OK;
}

char *ft_path_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ft_strdup(".");
    if (slash == path)
        return ft_strdup("/");
    return ft_strndup(path, (size_t)(slash - path));
}

ft_status ft_fsync_path(const char *path, ft_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot open for fsync: %s", strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems refuse fsync on folders (EINVAL); the rename is still ordered. */
    if (rc != 0 && e != EINVAL)
        return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "fsync failed: %s", strerror(e));
    return FT_OK;
}

ft_status ft_fd_write_all(int fd, const void *data, size_t len, const char *path, ft_err *err) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "write failed: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return FT_OK;
}

ft_status ft_file_write_atomic(const char *path, const void *data, size_t len, ft_err *err) {
    char *tmp = ft_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ft_status s = FT_ERR_AT(err, FT_ERR_IO, tmp, 0, 0, "cannot create: %s", strerror(errno));
        ft_free(tmp);
        return s;
    }
    ft_status s = ft_fd_write_all(fd, data, len, tmp, err);
    if (s == FT_OK && fsync(fd) != 0)
        s = FT_ERR_AT(err, FT_ERR_IO, tmp, 0, 0, "fsync failed: %s", strerror(errno));
    close(fd);
    if (s == FT_OK && rename(tmp, path) != 0)
        s = FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "rename from %s failed: %s", tmp, strerror(errno));
    if (s != FT_OK) {
        unlink(tmp);
    } else {
        char *dir = ft_path_parent(path);
        s = dir ? ft_fsync_path(dir, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(dir);
    }
    ft_free(tmp);
    return s;
}

ft_status ft_mkdir_p(const char *path, ft_err *err) {
    char *p = ft_strdup(path);
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == 0) {
            char c = *q;
            *q = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                ft_status s = FT_ERR_AT(err, FT_ERR_IO, p, 0, 0, "cannot create folder: %s", strerror(errno));
                ft_free(p);
                return s;
            }
            *q = c;
            if (c == 0)
                break;
        }
    }
    ft_free(p);
    if (!ft_path_is_dir(path))
        return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "exists and is not a folder");
    return FT_OK;
}

ft_status ft_rm_rf(const char *path, ft_err *err) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? FT_OK : FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot stat: %s", strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot open folder: %s", strerror(errno));
        struct dirent *de;
        ft_status s = FT_OK;
        while (s == FT_OK && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char *child = ft_path_join(path, de->d_name);
            s = child ? ft_rm_rf(child, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            ft_free(child);
        }
        closedir(d);
        if (s != FT_OK)
            return s;
        if (rmdir(path) != 0)
            return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot remove folder: %s", strerror(errno));
        return FT_OK;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot remove: %s", strerror(errno));
    return FT_OK;
}

ft_status ft_file_copy(const char *src, const char *dst, ft_err *err) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return FT_ERR_AT(err, FT_ERR_IO, src, 0, 0, "cannot open: %s", strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return FT_ERR_AT(err, FT_ERR_IO, dst, 0, 0, "cannot create: %s", strerror(errno));
    }
    static const size_t CHUNK = 1 << 20;
    char *buf = ft_malloc(CHUNK);
    ft_status s = buf ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    while (s == FT_OK) {
        ssize_t r = read(in, buf, CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            s = FT_ERR_AT(err, FT_ERR_IO, src, 0, 0, "read failed: %s", strerror(errno));
        if (r <= 0)
            break;
        s = ft_fd_write_all(out, buf, (size_t)r, dst, err);
    }
    if (s == FT_OK && fsync(out) != 0)
        s = FT_ERR_AT(err, FT_ERR_IO, dst, 0, 0, "fsync failed: %s", strerror(errno));
    ft_free(buf);
    close(in);
    close(out);
    return s;
}

bool ft_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool ft_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ft_path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la && a[la - 1] == '/')
        return ft_asprintf("%s%s", a, b);
    return ft_asprintf("%s/%s", a, b);
}

/* ---------------------------------------------------------------- canonical paths */

/* Append "/comp" (len n) to b, whose content is "" for the root or "/a/b". */
static void push_comp(ft_buf *b, const char *comp, size_t n) {
    ft_buf_append(b, "/", 1);
    ft_buf_append(b, comp, n);
}

static void pop_comp(ft_buf *b) {
    while (b->len > 0 && b->data[b->len - 1] != '/')
        b->len--;
    if (b->len > 0)
        b->len--; /* the slash */
    if (b->data)
        b->data[b->len] = 0;
}

/* Why a canonical form instead of realpath(3): the paths ftune stores (a run folder about to be
 * made, an experiment path, a data path) need not exist yet. The existing part is resolved like
 * the kernel does (symlinks followed, ".." taken after them); from the first missing component
 * on, "." and ".." are taken lexically, which is all the kernel could do once it exists. */
char *ft_path_canonical(const char *path) {
    if (!path || !*path)
        return NULL;
    ft_buf rest = {0}, out = {0};
    if (path[0] != '/') {
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            return NULL;
        ft_buf_appendf(&rest, "%s/", cwd);
        free(cwd);
    }
    ft_buf_appendf(&rest, "%s", path);
    ft_buf_append(&out, "", 0);
    bool missing = false;
    int links = 0;
    size_t i = 0;
    while (rest.data && i < rest.len) {
        while (i < rest.len && rest.data[i] == '/')
            i++;
        size_t start = i;
        while (i < rest.len && rest.data[i] != '/')
            i++;
        size_t n = i - start;
        const char *comp = rest.data + start;
        if (n == 0 || (n == 1 && comp[0] == '.'))
            continue;
        if (n == 2 && comp[0] == '.' && comp[1] == '.') {
            pop_comp(&out);
            continue;
        }
        size_t keep = out.len;
        push_comp(&out, comp, n);
        if (missing)
            continue;
        struct stat st;
        if (lstat(out.data, &st) != 0) {
            missing = true; /* ENOENT, ENOTDIR, EACCES, ENAMETOOLONG: nothing to resolve below */
            continue;
        }
        if (!S_ISLNK(st.st_mode))
            continue;
        if (++links > 40) { /* ELOOP */
            ft_buf_free(&rest);
            ft_buf_free(&out);
            return NULL;
        }
        char target[4096];
        ssize_t tl = readlink(out.data, target, sizeof target - 1);
        if (tl <= 0) {
            missing = true;
            continue;
        }
        target[tl] = 0;
        /* Splice the link's target in front of what is left, relative to the link's folder. */
        ft_buf next = {0};
        ft_buf_appendf(&next, "%s/%.*s", target, (int)(rest.len - i), rest.data + i);
        ft_buf_free(&rest);
        rest = next;
        i = 0;
        out.len = target[0] == '/' ? 0 : keep;
        out.data[out.len] = 0;
    }
    ft_buf_free(&rest);
    if (out.len == 0)
        ft_buf_append(&out, "/", 1);
    char *r = ft_strdup(ft_buf_cstr(&out));
    ft_buf_free(&out);
    return r;
}

bool ft_path_within(const char *path, const char *root) {
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == 0 || path[n] == '/');
}

char *ft_home_dir(void) {
    const char *h = getenv("FTUNE_HOME");
    if (h && *h)
        return ft_path_canonical(h);
    const char *home = getenv("HOME");
    char *raw = ft_asprintf("%s/.ftune", home && *home ? home : ".");
    char *out = raw ? ft_path_canonical(raw) : NULL;
    ft_free(raw);
    return out;
}

ft_status ft_home_make(const char *home, ft_err *err) {
    ft_status st = ft_mkdir_p(home, err);
    if (st != FT_OK && err) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n,
                 " (ftune's home %s, $FTUNE_HOME: point FTUNE_HOME at a writable folder)", home);
    }
    return st;
}

/* `rest` joined under `root` (both as given), canonical, and refused when it leaves root. */
static ft_status map_under(const char *path, const char *root_in, const char *rest, char **out, ft_err *err) {
    char *root = ft_path_canonical(root_in);
    char *joined = root ? ft_asprintf("%s/%s", root, rest) : NULL;
    char *canon = joined ? ft_path_canonical(joined) : NULL;
    ft_status s = FT_OK;
    if (!canon)
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "cannot resolve this path (too many symbolic links?)");
    else if (!ft_path_within(canon, root) || !strcmp(canon, root))
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                      "leaves %s (it resolves to %s): '..' and symbolic links may not lead out of it", root, canon);
    if (s == FT_OK)
        *out = canon;
    else
        ft_free(canon);
    ft_free(joined);
    ft_free(root);
    return s;
}

ft_status ft_path_map_root(const char *path, const char *root, const char *rest, char **out, ft_err *err) {
    *out = NULL;
    return map_under(path, root, rest, out, err);
}

ft_status ft_path_map(const char *path, char **out, ft_err *err) {
    *out = NULL;
    if (!path || !*path)
        return FT_ERR(err, FT_ERR_INVALID, "empty path");
    const char *rest = NULL;
    if (strncmp(path, "dbfs:/Volumes/", 14) == 0)
        rest = path + 14;
    else if (strncmp(path, "/Volumes/", 9) == 0)
        rest = path + 9;
    else if (strncmp(path, "dbfs:", 5) == 0)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                         "only dbfs:/Volumes/catalog/schema/volume/... paths are supported");
    if (!rest) {
        *out = ft_path_canonical(path);
        return *out ? FT_OK
                    : FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "cannot resolve this path (too many symbolic links?)");
    }
    char *home = ft_home_dir();
    char *root = home ? ft_path_join(home, "volumes") : NULL;
    ft_status s = root ? map_under(path, root, rest, out, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(home);
    ft_free(root);
    return s;
}

char *ft_path_map_volumes(const char *path) {
    char *out = NULL;
    ft_path_map(path, &out, NULL);
    return out;
}
