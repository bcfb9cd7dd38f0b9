/* paths.h - where zeroflow finds its own files and keeps its caches.
 *
 * Owns: the project root (config/, scripts/) as seen by an installed binary,
 * the cache directory (demo corpus, trained tokenizers, fetched
 * datasets), and the parent directory of an output path. */
#ifndef ZF_PATHS_H
#define ZF_PATHS_H

#include <stddef.h>

/* $ZF_ROOT, else the directory above the running executable's bin/. */
void zf_project_root(char *out, size_t n);
/* $ZF_CACHE_DIR, else $XDG_CACHE_HOME/zeroflow, else $HOME/.cache/zeroflow. */
void zf_cache_dir(char *out, size_t n);
/* The directory holding path, textually: "a/b" -> "a", "/b" -> "/", "b" -> "."
 * (where an atomic write's temporary file goes and what gets fsynced). */
void zf_path_parent(const char *path, char *out, size_t n);

#endif
