/* test_options.c - the run flags (lib/options.c).
 *
 * Checks: the documented defaults; `--flag value` and `--flag=value`; bool
 * and --resume forms; positional arguments and "--"; every kind of bad input
 * (unknown flag, missing value, wrong type, out of range, too long) gives
 * the expected one-line error naming the flag; --help lists every flag with
 * its default; the JSON dump round-trips through jansson. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "zf_check.h"

/* Parse a NULL-terminated list of arguments (argv[0] = "prog" is added). */
static int parse_list(zf_options *o, int *first, zf_err *e, const char *a0, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "prog";
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    zf_options_defaults(o);
    memset(e, 0, sizeof *e);
    return zf_options_parse(argc, argv, o, first, e);
}
#define PARSE(o, first, e, ...) parse_list(o, first, e, __VA_ARGS__, (const char *)NULL)

static void expect_error(const char *want, const char *a0, const char *a1, const char *a2)
{
    zf_options o;
    zf_err e;
    int rc = PARSE(&o, NULL, &e, a0, a1, a2);
    CHECK(rc == -1, "accepted: %s %s %s", a0, a1 ? a1 : "", a1 && a2 ? a2 : "");
    CHECK(!strcmp(e.msg, want), "for %s %s: got \"%s\", want \"%s\"", a0, a1 ? a1 : "", e.msg, want);
}

static void test_defaults(void)
{
    zf_options o;
    zf_options_defaults(&o);
    CHECK(!strcmp(o.model_name, "zf-demo") && !strcmp(o.dataset_name, "demo") && !strcmp(o.dataset_config, "") &&
              !strcmp(o.text_field, "text"),
          "data defaults");
    CHECK(o.batch_size == 8 && o.max_length == 128 && o.num_epochs == 1 && o.seed == 42, "numbers");
    CHECK(!strcmp(o.deepspeed_config, "") && !o.save_checkpoint && !strcmp(o.output_dir, "out"), "paths");
    CHECK(!strcmp(o.generation_prompt, "Once upon a time"), "prompt");
    CHECK(o.max_train_steps == 0 && o.max_eval_steps == 20 && o.tokenizer_workers == 2 && !o.resume &&
              !o.resume_path[0] && o.save_every == 0,
          "steps");
    CHECK(o.num_gpus == 0 && o.world_size == 1 && o.max_new_tokens == 64 && o.temperature == 0.8 && o.top_k == 40 &&
              o.top_p == 0.95,
          "sampling");
    CHECK(o.eval_every == 0 && o.log_every == 10 && o.vocab_size == 4096 && !o.tokenizer[0] && !o.export_hf[0], "misc");
    CHECK(!o.run_dir[0] && !o.run_id[0] && o.rank == 0 && !o.help && o.given == 0, "internal");
    zf_err e;
    CHECK(PARSE(&o, NULL, &e, NULL) == 0, "empty: %s", e.msg);
}

static void test_forms(void)
{
    zf_options o;
    zf_err e;
    int first = -1;
    CHECK(PARSE(&o, &first, &e, "--batch_size", "4", "--max_length=64", "--temperature", "0.5", "--top_p=1",
                "--model_name", "zf-tiny", "--dataset_config=bytes=600000", "--seed", "0", "--max_train_steps",
                "9000000000", "--generation_prompt", "a prompt - with --dashes inside", "--output_dir=",
                "--run_id", "123-abc", "--world_size", "4", "--rank", "3") == 0,
          "%s", e.msg);
    CHECK(first == 23, "first positional %d", first);
    CHECK(o.batch_size == 4 && o.max_length == 64 && o.temperature == 0.5 && o.top_p == 1.0, "numbers");
    CHECK(!strcmp(o.model_name, "zf-tiny") && !strcmp(o.dataset_config, "bytes=600000"), "strings (= in value)");
    CHECK(o.seed == 0 && o.max_train_steps == 9000000000LL, "int64");
    CHECK(!strcmp(o.output_dir, "") && !strcmp(o.run_id, "123-abc") && o.world_size == 4 && o.rank == 3, "more");
    CHECK(zf_options_given(&o, "batch_size") && zf_options_given(&o, "rank") && !zf_options_given(&o, "top_k") &&
              !zf_options_given(&o, "nope"),
          "given");

    /* A value that starts with "--" is taken as the next flag, not a value. */
    CHECK(PARSE(&o, NULL, &e, "--generation_prompt", "--seed", "1") == -1 &&
              !strcmp(e.msg, "--generation_prompt: missing value (expected a value (at most 1023 bytes))"),
          "%s", e.msg);
    /* Negative numbers are values. */
    CHECK(PARSE(&o, NULL, &e, "--seed", "-1") == -1 &&
              !strcmp(e.msg, "--seed: expected an integer >= 0, got \"-1\""),
          "%s", e.msg);

    /* booleans */
    CHECK(PARSE(&o, NULL, &e, "--save_checkpoint") == 0 && o.save_checkpoint == 1, "bare bool");
    CHECK(PARSE(&o, NULL, &e, "--save_checkpoint", "false") == 0 && o.save_checkpoint == 0, "bool false");
    CHECK(PARSE(&o, NULL, &e, "--save_checkpoint", "true", "--seed", "3") == 0 && o.save_checkpoint && o.seed == 3,
          "bool true then flag");
    CHECK(PARSE(&o, NULL, &e, "--save_checkpoint=false") == 0 && !o.save_checkpoint, "bool =false");
    CHECK(PARSE(&o, NULL, &e, "--save_checkpoint", "--save_checkpoint=true") == 0 && o.save_checkpoint, "repeat");
    /* A bare bool followed by a positional leaves the positional alone. */
    CHECK(PARSE(&o, &first, &e, "--save_checkpoint", "file.txt") == 0 && o.save_checkpoint && first == 2,
          "bool then positional: first %d", first);

    /* --resume: flag, path, or boolean */
    CHECK(PARSE(&o, NULL, &e, "--resume") == 0 && o.resume == 1 && !o.resume_path[0], "bare resume");
    CHECK(PARSE(&o, NULL, &e, "--resume", "out/ckpt-100", "--seed", "5") == 0 && o.resume &&
              !strcmp(o.resume_path, "out/ckpt-100") && o.seed == 5,
          "resume path");
    CHECK(PARSE(&o, NULL, &e, "--resume=/x/y") == 0 && o.resume && !strcmp(o.resume_path, "/x/y"), "resume=path");
    CHECK(PARSE(&o, NULL, &e, "--resume", "false") == 0 && !o.resume && !o.resume_path[0], "resume false");
    CHECK(PARSE(&o, NULL, &e, "--resume", "--seed", "5") == 0 && o.resume && !o.resume_path[0], "resume then flag");

    /* positionals and "--" */
    CHECK(PARSE(&o, &first, &e, "--seed", "7", "MODEL", "--not-parsed") == 0 && first == 3 && o.seed == 7,
          "positional: %d", first);
    CHECK(PARSE(&o, &first, &e, "--seed", "7", "--", "--seed") == 0 && first == 4 && o.seed == 7, "--: %d", first);
    CHECK(PARSE(&o, &first, &e, "--seed", "7") == 0 && first == 3, "no positional: %d", first);
    CHECK(PARSE(&o, &first, &e, "-", "x") == 0 && first == 1, "dash is positional: %d", first);

    /* help */
    CHECK(PARSE(&o, NULL, &e, "--help") == 0 && o.help, "--help");
    CHECK(PARSE(&o, NULL, &e, "-h", "--seed", "2") == 0 && o.help && o.seed == 2, "-h");
}

static void test_errors(void)
{
    expect_error("\"--batchsize\": unknown flag (did you mean --batch_size? see --help)", "--batchsize", "4", NULL);
    expect_error("\"--frobnicate\": unknown flag (see --help for the list)", "--frobnicate", NULL, NULL);
    expect_error("\"--lr=3\": unknown flag (see --help for the list)", "--lr=3", NULL, NULL);
    expect_error("\"-b\": unknown flag (flags are spelled --name; see --help)", "-b", "4", NULL);
    expect_error("--batch_size: missing value (expected an integer in [1, 65536])", "--batch_size", NULL, NULL);
    expect_error("--batch_size: expected an integer in [1, 65536], got \"many\"", "--batch_size", "many", NULL);
    expect_error("--batch_size: expected an integer in [1, 65536], got \"0\"", "--batch_size", "0", NULL);
    expect_error("--batch_size: expected an integer in [1, 65536], got \"4.0\"", "--batch_size=4.0", NULL, NULL);
    expect_error("--batch_size: expected an integer in [1, 65536], got \"\"", "--batch_size=", NULL, NULL);
    expect_error("--batch_size: expected an integer in [1, 65536], got \"99999999999999999999\"", "--batch_size",
                 "99999999999999999999", NULL);
    expect_error("--max_length: expected an integer in [1, 1048576], got \"12x\"", "--max_length", "12x", NULL);
    expect_error("--temperature: expected a number in [0, 100], got \"hot\"", "--temperature", "hot", NULL);
    expect_error("--temperature: expected a number in [0, 100], got \"nan\"", "--temperature", "nan", NULL);
    expect_error("--top_p: expected a number in [0, 1], got \"1.5\"", "--top_p", "1.5", NULL);
    expect_error("--save_checkpoint: expected true or false, got \"yes\"", "--save_checkpoint=yes", NULL, NULL);
    expect_error("--resume: expected a checkpoint path, true or false, got an empty value", "--resume=", NULL, NULL);
    expect_error("--log_every: expected an integer >= 1, got \"0\"", "--log_every", "0", NULL);
    expect_error("--vocab_size: expected an integer in [256, 1048576], got \"100\"", "--vocab_size", "100", NULL);
    expect_error("--rank: expected 0..0 (below --world_size 1), got 1", "--rank", "1", NULL);
    expect_error("--record: expected no --replay (a replayed run has nothing to record)", "--record=a.zts",
                 "--replay=b.zts", NULL);
    expect_error("\"extra\": unexpected argument (flags are spelled --name value; see --help)", "--seed", "1", "extra");
    expect_error("\"a?b\": unexpected argument (flags are spelled --name value; see --help)", "a\nb", NULL, NULL);
    /* over-long string */
    char *big = malloc(ZF_OPT_STR_MAX + 10);
    memset(big, 'p', ZF_OPT_STR_MAX + 9);
    big[ZF_OPT_STR_MAX] = 0; /* length ZF_OPT_STR_MAX: one too many */
    zf_options o;
    zf_err e;
    CHECK(PARSE(&o, NULL, &e, "--output_dir", big) == -1 &&
              !strcmp(e.msg, "--output_dir: expected at most 1023 bytes, got 1024"),
          "%s", e.msg);
    big[ZF_OPT_STR_MAX - 1] = 0; /* exactly the maximum */
    CHECK(PARSE(&o, NULL, &e, "--output_dir", big) == 0 && strlen(o.output_dir) == ZF_OPT_STR_MAX - 1, "%s", e.msg);
    free(big);
    /* errors never span lines */
    CHECK(PARSE(&o, NULL, &e, "--seed", "1\n2") == -1 && !strchr(e.msg, '\n') &&
              !strcmp(e.msg, "--seed: expected an integer >= 0, got \"1?2\""),
          "%s", e.msg);
}

static void test_help_and_json(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    zf_options_print_help(f, "trainer");
    fclose(f);
    static const char *const flags[] = {
        "--model_name NAME", "--dataset_name NAME", "--dataset_config TEXT", "--text_field NAME", "--batch_size N",
        "--max_length N", "--num_epochs N", "--seed N", "--deepspeed_config PATH", "--save_checkpoint ",
        "--output_dir DIR", "--generation_prompt TEXT", "--max_train_steps N", "--max_eval_steps N",
        "--tokenizer_workers N", "--resume [PATH]", "--save_every N", "--num_gpus N", "--world_size N",
        "--max_new_tokens N", "--temperature X", "--top_k N", "--top_p X", "--eval_every N", "--log_every N",
        "--vocab_size N", "--tokenizer PATH", "--record PATH", "--replay PATH[,PATH...]", "--run_dir DIR",
        "--run_id ID", "--rank N"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char line_start[64];
        snprintf(line_start, sizeof line_start, "\n  %s", flags[i]);
        CHECK(strstr(text, line_start) != NULL, "help lacks a line for %s", flags[i]);
    }
    /* Defaults appear on their flag's line. */
    const char *l = strstr(text, "\n  --batch_size N");
    CHECK(l && strstr(l, " 8 ") && strstr(l, " 8 ") < strchr(l + 1, '\n'), "batch_size default");
    l = strstr(text, "\n  --generation_prompt TEXT");
    CHECK(l && strstr(l, "\"Once upon a time\"") && strstr(l, "\"Once upon a time\"") < strchr(l + 1, '\n'), "prompt default");
    l = strstr(text, "\n  --temperature X");
    CHECK(l && strstr(l, " 0.8 ") && strstr(l, " 0.8 ") < strchr(l + 1, '\n'), "temperature default");
    free(text);

    f = open_memstream(&text, &len);
    zf_options_print_markdown(f);
    fclose(f);
    CHECK(!strncmp(text, "| flag | default | meaning |\n|---|---|---|\n", 42), "markdown header");
    CHECK(strstr(text, "| `--batch_size N` | `8` |"), "markdown row");
    free(text);

    zf_options o;
    zf_err e;
    CHECK(PARSE(&o, NULL, &e, "--resume", "ck/pt", "--seed", "7", "--top_p", "0.5", "--generation_prompt", "say \"hi\"") == 0,
          "%s", e.msg);
    char *js = zf_options_to_json(&o);
    json_error_t je;
    json_t *root = json_loads(js, 0, &je);
    CHECK(root != NULL, "json: %s: %s", je.text, js);
    if (root) {
        CHECK(json_integer_value(json_object_get(root, "seed")) == 7, "seed");
        CHECK(json_real_value(json_object_get(root, "top_p")) == 0.5, "top_p");
        CHECK(json_is_true(json_object_get(root, "resume")), "resume");
        CHECK(!strcmp(json_string_value(json_object_get(root, "resume_path")), "ck/pt"), "resume_path");
        CHECK(!strcmp(json_string_value(json_object_get(root, "generation_prompt")), "say \"hi\""), "prompt");
        CHECK(json_is_false(json_object_get(root, "save_checkpoint")), "bool");
        CHECK(json_object_size(root) == 37, "%zu keys", json_object_size(root));
        json_decref(root);
    }
    free(js);
}

int main(void)
{
    test_defaults();
    test_forms();
    test_errors();
    test_help_and_json();
    return zf_check_summary("test_options");
}
