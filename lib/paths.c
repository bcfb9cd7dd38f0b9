/* paths.c - see paths.h. */
#include "paths.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void zf_project_root(char *out, size_t n)
{
    const char *env = getenv("ZF_ROOT");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        snprintf(out, n, ".");
        return;
    }
    exe[len] = 0;
    /* <root>/bin/<exe> or <root>/bin/tests/<exe> */
    char *dir = dirname(exe);
    if (!strcmp(basename(dir), "tests")) dir = dirname(dir);
    snprintf(out, n, "%s", dirname(dir));
}

void zf_cache_dir(char *out, size_t n)
{
    const char *env = getenv("ZF_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) snprintf(out, n, "%s", env);
    else if (xdg && *xdg) snprintf(out, n, "%s/zeroflow", xdg);
    else snprintf(out, n, "%s/.cache/zeroflow", home && *home ? home : "/tmp");
}

void zf_path_parent(const char *path, char *out, size_t n)
{
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, n, ".");
    else if (slash == out) out[1] = 0;
    else *slash = 0;
}
