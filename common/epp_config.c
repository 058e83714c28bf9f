/* Declarative configuration (see epp_config.h).
 *
 * Parsing runs in three passes over the same table: defaults, then environment variables, then
 * argv, each overwriting the last, so the precedence is visible in one place
 * (epp_config_parse). Every value goes through set_value(), which does the type and bounds
 * checks and writes the error message naming where the value came from. */
#include "epp_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "epp_error.h"
#include "epp_log.h"

#ifndef EPP_VERSION
#define EPP_VERSION "unknown"
#endif

/* Where a value came from, for error messages. */
typedef enum { SRC_DEFAULT, SRC_ENV, SRC_FLAG } src_t;

static void *field(void *cfg, const epp_conf_opt_t *opt)
{
    return (char *)cfg + opt->offset;
}

static int has_bounds(const epp_conf_opt_t *opt)
{
    return opt->min <= opt->max;
}

static void errf(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || errsz == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* Formats a bound: integers without a fraction or exponent when they fit. */
static void format_num(char *out, size_t outsz, double v)
{
    if (v == floor(v) && fabs(v) < 9e15)
        snprintf(out, outsz, "%.0f", v);
    else
        snprintf(out, outsz, "%g", v);
}

/* "--http-port (HTTP_PORT)" for flag errors, "HTTP_PORT (--http-port)" for env errors. */
static void describe(char *out, size_t outsz, const epp_conf_opt_t *opt, src_t src)
{
    if (src == SRC_ENV && opt->env)
        snprintf(out, outsz, "%s (--%s)", opt->env, opt->flag);
    else if (src == SRC_DEFAULT)
        snprintf(out, outsz, "the default of --%s", opt->flag);
    else if (opt->env)
        snprintf(out, outsz, "--%s (%s)", opt->flag, opt->env);
    else
        snprintf(out, outsz, "--%s", opt->flag);
}

static int bad_value(const epp_conf_opt_t *opt, src_t src, const char *text, const char *why,
                     char *err, size_t errsz)
{
    char who[256];
    describe(who, sizeof who, opt, src);
    if (opt->flags & EPP_CONF_SECRET)
        errf(err, errsz, "invalid value for %s: %s", who, why);
    else
        errf(err, errsz, "invalid value \"%s\" for %s: %s", text, who, why);
    return EPP_EINVAL;
}

static int out_of_range(const epp_conf_opt_t *opt, src_t src, const char *text, char *err,
                        size_t errsz)
{
    char lo[32], hi[32], why[96];
    format_num(lo, sizeof lo, opt->min);
    format_num(hi, sizeof hi, opt->max);
    snprintf(why, sizeof why, "must be between %s and %s", lo, hi);
    return bad_value(opt, src, text, why, err, errsz);
}

/* Plain decimal only: an optional sign and digits, nothing before or after. */
static int parse_int(const char *text, int64_t *out, int *overflow)
{
    const char *p = text;
    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return -1;
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    *overflow = errno == ERANGE;
    *out = (int64_t)v;
    return 0;
}

static int parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Type- and bounds-checks text and stores it in the option's field. */
static int set_value(const epp_conf_opt_t *opt, void *cfg, const char *text, src_t src, char *err,
                     size_t errsz)
{
    switch (opt->type) {
    case EPP_CONF_STRING: {
        char *copy = strdup(text);
        if (!copy) {
            errf(err, errsz, "out of memory");
            return EPP_ENOMEM;
        }
        char **slot = field(cfg, opt);
        free(*slot);
        *slot = copy;
        return 0;
    }
    case EPP_CONF_INT: {
        int64_t v;
        int overflow;
        if (parse_int(text, &v, &overflow) != 0)
            return bad_value(opt, src, text, "not an integer", err, errsz);
        if (overflow) {
            if (has_bounds(opt))
                return out_of_range(opt, src, text, err, errsz);
            return bad_value(opt, src, text, "integer out of range", err, errsz);
        }
        if (has_bounds(opt) && ((double)v < opt->min || (double)v > opt->max))
            return out_of_range(opt, src, text, err, errsz);
        *(int64_t *)field(cfg, opt) = v;
        return 0;
    }
    case EPP_CONF_DOUBLE: {
        char *end;
        if (*text == '\0' || isspace((unsigned char)*text))
            return bad_value(opt, src, text, "not a number", err, errsz);
        errno = 0;
        double v = strtod(text, &end);
        if (*end != '\0' || isnan(v))
            return bad_value(opt, src, text, "not a number", err, errsz);
        if (isinf(v) || errno == ERANGE) {
            if (has_bounds(opt))
                return out_of_range(opt, src, text, err, errsz);
            if (isinf(v))
                return bad_value(opt, src, text, "not a finite number", err, errsz);
        }
        if (has_bounds(opt) && (v < opt->min || v > opt->max))
            return out_of_range(opt, src, text, err, errsz);
        *(double *)field(cfg, opt) = v;
        return 0;
    }
    case EPP_CONF_BOOL: {
        bool v;
        if (parse_bool(text, &v) != 0)
            return bad_value(opt, src, text, "not a boolean (true|false|1|0|yes|no)", err, errsz);
        *(bool *)field(cfg, opt) = v;
        return 0;
    }
    }
    errf(err, errsz, "option --%s has an unknown type", opt->flag);
    return EPP_EINVAL;
}

static const epp_conf_opt_t *find_flag(const epp_conf_opt_t *table, const char *name, size_t len)
{
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++)
        if (strlen(opt->flag) == len && memcmp(opt->flag, name, len) == 0)
            return opt;
    return NULL;
}

/* Scans the options part of argv for --help/-h/--version/--help-markdown, so that they work even
 * when another option or an environment variable holds a bad value. Returns 1 when one was found
 * and printed. */
static int want_help(const epp_conf_opt_t *table, int argc, char **argv, const char *prog,
                     const char *summary, int stop_at_positional)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0)
            break;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            epp_config_print_help(stdout, prog, summary, table);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", prog, EPP_VERSION);
            return 1;
        }
        if (strcmp(arg, "--help-markdown") == 0) {
            /* The configuration table of the program's README and docs/configuration.md. */
            epp_config_print_markdown(stdout, table);
            return 1;
        }
        if (strncmp(arg, "--", 2) == 0) {
            /* Skip the separate value of a "--flag value" pair: it might be "-h" by chance. */
            const char *name = arg + 2;
            const epp_conf_opt_t *opt =
                strchr(name, '=') ? NULL : find_flag(table, name, strlen(name));
            if (opt && opt->type != EPP_CONF_BOOL)
                i++;
        } else if (arg[0] != '-' || arg[1] == '\0') {
            if (stop_at_positional)
                break;
        }
    }
    return 0;
}

int epp_config_parse(const epp_conf_opt_t *table, void *cfg, int argc, char **argv,
                     const char *prog, const char *summary, int *rest_index, char *err,
                     size_t errsz)
{
    if (err && errsz)
        err[0] = '\0';
    if (!prog)
        prog = argc > 0 && argv[0] ? argv[0] : "epp";

    /* Start from a known state so that epp_config_free() is safe on every return path. */
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++) {
        switch (opt->type) {
        case EPP_CONF_STRING:
            *(char **)field(cfg, opt) = NULL;
            break;
        case EPP_CONF_INT:
            *(int64_t *)field(cfg, opt) = 0;
            break;
        case EPP_CONF_DOUBLE:
            *(double *)field(cfg, opt) = 0;
            break;
        case EPP_CONF_BOOL:
            *(bool *)field(cfg, opt) = false;
            break;
        }
    }

    /* 1. Defaults. A bad default is a programmer error, reported like a bad value. */
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++) {
        if (!opt->def)
            continue;
        int rc = set_value(opt, cfg, opt->def, SRC_DEFAULT, err, errsz);
        if (rc)
            return rc;
    }

    if (want_help(table, argc, argv, prog, summary, rest_index != NULL))
        return 1;

    /* 2. Environment variables. */
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++) {
        const char *v = opt->env ? getenv(opt->env) : NULL;
        if (!v)
            continue;
        int rc = set_value(opt, cfg, v, SRC_ENV, err, errsz);
        if (rc)
            return rc;
    }

    /* 3. Flags. Parsing stops at the first positional argument (or after "--") when the caller
     * accepts positional arguments, so that a sub-command can parse the rest itself. */
    if (rest_index)
        *rest_index = argc;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            if (rest_index) {
                *rest_index = i + 1;
                return 0;
            }
            if (i + 1 < argc) {
                errf(err, errsz, "unexpected argument \"%s\" (see --help)", argv[i + 1]);
                return EPP_EINVAL;
            }
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (arg[0] == '-' && arg[1] != '\0') {
                errf(err, errsz, "unknown option %s (see --help)", arg);
                return EPP_EINVAL;
            }
            if (rest_index) {
                *rest_index = i;
                return 0;
            }
            errf(err, errsz, "unexpected argument \"%s\" (see --help)", arg);
            return EPP_EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const epp_conf_opt_t *opt = find_flag(table, name, len);
        if (!opt) {
            errf(err, errsz, "unknown option --%.*s (see --help)", (int)len, name);
            return EPP_EINVAL;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (opt->type == EPP_CONF_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            errf(err, errsz, "option --%s needs a value (see --help)", opt->flag);
            return EPP_EINVAL;
        }
        int rc = set_value(opt, cfg, value, SRC_FLAG, err, errsz);
        if (rc)
            return rc;
    }
    return 0;
}

static const char *type_word(const epp_conf_opt_t *opt)
{
    switch (opt->type) {
    case EPP_CONF_STRING:
        return "STRING";
    case EPP_CONF_INT:
        return "INT";
    case EPP_CONF_DOUBLE:
        return "NUMBER";
    case EPP_CONF_BOOL:
        return "BOOL";
    }
    return "VALUE";
}

/* "1..65535", or "" when the option has no bounds. */
static void format_range(char *out, size_t outsz, const epp_conf_opt_t *opt)
{
    out[0] = '\0';
    if ((opt->type != EPP_CONF_INT && opt->type != EPP_CONF_DOUBLE) || !has_bounds(opt))
        return;
    char lo[32], hi[32];
    format_num(lo, sizeof lo, opt->min);
    format_num(hi, sizeof hi, opt->max);
    snprintf(out, outsz, "%s..%s", lo, hi);
}

void epp_config_print_help(FILE *out, const char *prog, const char *summary,
                           const epp_conf_opt_t *table)
{
    fprintf(out, "Usage: %s [OPTIONS]\n", prog ? prog : "epp");
    if (summary && *summary)
        fprintf(out, "\n%s\n", summary);
    fprintf(out, "\nOptions (each may also be set by its environment variable; flags win over "
                 "the environment):\n");
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++) {
        char range[80];
        format_range(range, sizeof range, opt);
        if (opt->type == EPP_CONF_BOOL)
            fprintf(out, "  --%s[=BOOL]\n", opt->flag);
        else
            fprintf(out, "  --%s=%s\n", opt->flag, type_word(opt));
        fprintf(out, "      %s\n", opt->help ? opt->help : "");
        fprintf(out, "      env: %s, default: ", opt->env ? opt->env : "(none)");
        /* Defaults are part of the program, not secrets; values given at run time never appear. */
        if (!opt->def)
            fputs("(none)", out);
        else if (!*opt->def)
            fputs("\"\"", out);
        else
            fputs(opt->def, out);
        if (range[0])
            fprintf(out, ", range: %s", range);
        if (opt->flags & EPP_CONF_SECRET)
            fputs(", secret", out);
        fputc('\n', out);
    }
    fprintf(out, "  -h, --help\n      Print this help and exit.\n");
    fprintf(out, "  --help-markdown\n      Print the options as a Markdown table and exit.\n");
    fprintf(out, "  --version\n      Print the version and exit.\n");
}

/* Writes s into a Markdown table cell: '|' escaped, newlines flattened. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

void epp_config_print_markdown(FILE *out, const epp_conf_opt_t *table)
{
    fputs("| flag | env | default | description |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++) {
        fprintf(out, "| `--%s` | ", opt->flag);
        if (opt->env)
            fprintf(out, "`%s`", opt->env);
        else
            fputs("-", out);
        fputs(" | ", out);
        if (!opt->def) {
            fputs("(none)", out);
        } else if (!*opt->def) {
            fputs("(empty)", out);
        } else {
            fputc('`', out);
            md_cell(out, opt->def);
            fputc('`', out);
        }
        fputs(" | ", out);
        md_cell(out, opt->help ? opt->help : "");
        char range[80];
        format_range(range, sizeof range, opt);
        if (range[0])
            fprintf(out, " (%s)", range);
        if (opt->flags & EPP_CONF_SECRET)
            fputs(" (secret)", out);
        fputs(" |\n", out);
    }
}

/* Shortest text that reads back as the same double. */
static void format_double(char *out, size_t outsz, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, outsz, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* 1 when the key of a key=value item (len bytes, blanks around it ignored) names a secret: it
 * contains "password" or "secret", or starts with "sasl." or "ssl.key" (any case). */
static int secret_key(const char *key, size_t len)
{
    while (len > 0 && (*key == ' ' || *key == '\t')) {
        key++;
        len--;
    }
    while (len > 0 && (key[len - 1] == ' ' || key[len - 1] == '\t'))
        len--;
    char low[128];
    if (len >= sizeof(low))
        return 1; /* no setting has such a name: not worth the risk */
    for (size_t i = 0; i < len; i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    low[len] = '\0';
    return strstr(low, "password") != NULL || strstr(low, "secret") != NULL ||
           strncmp(low, "sasl.", 5) == 0 || strncmp(low, "ssl.key", 7) == 0;
}

/* For a string shown in the log: the value of every secret-looking key among its
 * comma-separated key=value items (KAFKA_PRODUCER_CONFIG, KAFKA_CONSUMER_CONFIG) becomes
 * "(set)". Returns s itself when nothing needs hiding, else a copy in *owned (caller frees), or
 * "(not shown)" when that copy cannot be made. */
static const char *redact_list(const char *s, char **owned)
{
    *owned = NULL;
    int hide = 0;
    for (const char *item = s; item != NULL && !hide;) {
        const char *end = strchr(item, ',');
        size_t len = end ? (size_t)(end - item) : strlen(item);
        const char *eq = memchr(item, '=', len);
        hide = eq != NULL && secret_key(item, (size_t)(eq - item));
        item = end ? end + 1 : NULL;
    }
    if (!hide)
        return s;
    /* Each item grows by at most strlen("(set)"). */
    size_t items = 1;
    for (const char *p = s; *p; p++)
        items += *p == ',';
    char *out = malloc(strlen(s) + 5 * items + 1);
    if (out == NULL)
        return "(not shown)";
    char *o = out;
    for (const char *item = s; item != NULL;) {
        const char *end = strchr(item, ',');
        size_t len = end ? (size_t)(end - item) : strlen(item);
        const char *eq = memchr(item, '=', len);
        if (eq != NULL && secret_key(item, (size_t)(eq - item))) {
            size_t klen = (size_t)(eq - item) + 1;
            memcpy(o, item, klen);
            memcpy(o + klen, "(set)", 5);
            o += klen + 5;
        } else {
            memcpy(o, item, len);
            o += len;
        }
        if (end)
            *o++ = ',';
        item = end ? end + 1 : NULL;
    }
    *o = '\0';
    *owned = out;
    return out;
}

void epp_config_log(const epp_conf_opt_t *table, const void *cfg)
{
    if (!EPP_LOG_ON(EPP_LOG_INFO))
        return;
    size_t n = 0;
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++)
        n++;
    const char **kv = calloc(2 * n + 1, sizeof *kv);
    char(*num)[40] = calloc(n + 1, sizeof *num);
    char **owned = calloc(n + 1, sizeof *owned); /* redacted copies of list values */
    if (!kv || !num || !owned) {
        free(kv);
        free(num);
        free(owned);
        EPP_WARN("configuration not logged: out of memory");
        return;
    }
    size_t i = 0;
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++, i++) {
        const void *p = (const char *)cfg + opt->offset;
        kv[2 * i] = opt->flag;
        switch (opt->type) {
        case EPP_CONF_STRING: {
            const char *s = *(char *const *)p;
            if (opt->flags & EPP_CONF_SECRET)
                kv[2 * i + 1] = s && *s ? "(set)" : "(unset)";
            else
                kv[2 * i + 1] = s ? redact_list(s, &owned[i]) : NULL;
            break;
        }
        case EPP_CONF_INT:
            snprintf(num[i], sizeof num[i], "%" PRId64, *(const int64_t *)p);
            kv[2 * i + 1] = num[i];
            break;
        case EPP_CONF_DOUBLE:
            format_double(num[i], sizeof num[i], *(const double *)p);
            kv[2 * i + 1] = num[i];
            break;
        case EPP_CONF_BOOL:
            kv[2 * i + 1] = *(const bool *)p ? "true" : "false";
            break;
        }
        /* Secrets of any type are redacted, not only strings. */
        if ((opt->flags & EPP_CONF_SECRET) && opt->type != EPP_CONF_STRING)
            kv[2 * i + 1] = "(set)";
    }
    epp_log_kv_array(EPP_LOG_INFO, "configuration", kv, n);
    for (size_t k = 0; k < n; k++)
        free(owned[k]);
    free(owned);
    free(kv);
    free(num);
}

void epp_config_free(const epp_conf_opt_t *table, void *cfg)
{
    if (!table || !cfg)
        return;
    for (const epp_conf_opt_t *opt = table; opt->flag; opt++) {
        if (opt->type != EPP_CONF_STRING)
            continue;
        char **slot = field(cfg, opt);
        free(*slot);
        *slot = NULL;
    }
}
