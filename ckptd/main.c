/* ckptd - checkpoint writer (see ckpt_server.h) and its offline tools.
 *
 *   ckptd [flags]                                  the pipeline daemon
 *   ckptd consolidate CKPT OUT [--dtype fp32|bf16] [--hf]
 *                                                  the ranks' partitions as one model:
 *                                                  OUT.safetensors, or with --hf an HF directory
 *   ckptd export CKPT OUT_DIR                      = consolidate CKPT OUT_DIR --hf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_consolidate.h"
#include "ckpt_server.h"
#include "hf_model.h"
#include "log.h"
#include "options.h"

#define CONSOLIDATE_USAGE "usage: ckptd consolidate CHECKPOINT_OR_OUTPUT_DIR OUT [--dtype fp32|bf16] [--hf]"

static int consolidate(const char *ckpt, const char *out, int bf16, int hf)
{
    zf_gpt2_config cfg;
    zf_param_table table;
    float *params = NULL;
    char dir[1024];
    zf_err err;
    struct stat st;
    if (!hf && stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        zf_die("%s: expected a file name for the safetensors file, got a directory (--hf writes a directory)", out);
    if (zf_ckpt_consolidate(ckpt, &cfg, &table, &params, dir, sizeof dir, &err) != 0) zf_die("%s", err.msg);
    if (hf ? zf_hf_save(out, &cfg, &table, params, dir, &err) : zf_ckpt_write_safetensors(out, &table, params, bf16, &err))
        zf_die("%s", err.msg);
    printf("%s %s (%zu parameters) to %s%s\n", hf ? "exported" : "consolidated", dir, zf_param_count(&table), out,
           hf ? "" : bf16 ? " (bf16)" : " (fp32)");
    free(params);
    zf_param_table_free(&table);
    return 0;
}

static int consolidate_main(int argc, char **argv)
{
    const char *pos[2] = { NULL, NULL };
    int npos = 0, bf16 = 0, hf = 0, dtype_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--hf")) {
            hf = 1;
        } else if (!strcmp(a, "--dtype") || !strncmp(a, "--dtype=", 8)) {
            v = a[7] == '=' ? a + 8 : i + 1 < argc ? argv[++i] : "";
            if (!strcmp(v, "fp32")) bf16 = 0;
            else if (!strcmp(v, "bf16")) bf16 = 1;
            else zf_die("--dtype: expected fp32 or bf16, got '%s'", v);
            dtype_given = 1;
        } else if (a[0] == '-' && a[1] == '-') {
            zf_die("%s: unknown flag\n" CONSOLIDATE_USAGE, a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            zf_die("'%s': unexpected argument\n" CONSOLIDATE_USAGE, a);
        }
    }
    if (npos != 2) zf_die(CONSOLIDATE_USAGE);
    /* the HF directory is the one `ckptd export` writes: fp32 */
    if (hf && dtype_given && bf16) zf_die("--dtype bf16: the --hf directory is written in fp32; bf16 is for the single-file output");
    return consolidate(pos[0], pos[1], bf16, hf);
}

int main(int argc, char **argv)
{
    zf_log_init("ckptd");
    if (argc > 1 && !strcmp(argv[1], "consolidate")) return consolidate_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "export")) {
        if (argc != 4) zf_die("usage: ckptd export CHECKPOINT_OR_OUTPUT_DIR OUT_DIR");
        return consolidate(argv[2], argv[3], 0, 1);
    }
    zf_options o;
    zf_err err;
    zf_options_defaults(&o);
    if (zf_options_parse(argc, argv, &o, NULL, &err) != 0) zf_die("%s", err.msg);
    return zf_ckpt_serve(&o);
}
