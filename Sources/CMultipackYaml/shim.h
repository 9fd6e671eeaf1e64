#ifndef MULTIPACK_YAML_SHIM_H
#define MULTIPACK_YAML_SHIM_H

// libyaml's event parser, loaded with dlopen on the first release parse like libcurl: it costs
// the static binary nothing, and libyaml-0-2 is on every Heroku stack (Ruby's Psych, which reads
// release YAML on Heroku itself, is built on it). yaml.h gives the types only; no symbol of it is
// linked.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <yaml.h>

struct multipack_yaml {
    int (*parser_initialize)(yaml_parser_t *parser);
    void (*parser_delete)(yaml_parser_t *parser);
    void (*set_input_string)(yaml_parser_t *parser, const unsigned char *input, size_t size);
    int (*parse)(yaml_parser_t *parser, yaml_event_t *event);
    void (*event_delete)(yaml_event_t *event);
};

/// Loads libyaml; NULL with the reason in `error` when it is missing. The table lives for the
/// rest of the process.
static inline const struct multipack_yaml *multipack_yaml_load(char *error, size_t error_size) {
    static const char *const sonames[] = {"libyaml-0.so.2", "libyaml.so"};
    snprintf(error, error_size, "no libyaml to load");
    for (size_t i = 0; i < sizeof sonames / sizeof sonames[0]; i++) {
        void *library = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
        if (library == NULL) {
            const char *reason = dlerror();
            snprintf(error, error_size, "%s", reason != NULL ? reason : sonames[i]);
            continue;
        }
        struct multipack_yaml *api = calloc(1, sizeof *api);
        if (api == NULL) {
            snprintf(error, error_size, "out of memory");
            dlclose(library);
            return NULL;
        }
        // POSIX's sanctioned way to store a dlsym result in a function pointer.
        *(void **)(&api->parser_initialize) = dlsym(library, "yaml_parser_initialize");
        *(void **)(&api->parser_delete) = dlsym(library, "yaml_parser_delete");
        *(void **)(&api->set_input_string) = dlsym(library, "yaml_parser_set_input_string");
        *(void **)(&api->parse) = dlsym(library, "yaml_parser_parse");
        *(void **)(&api->event_delete) = dlsym(library, "yaml_event_delete");
        if (api->parser_initialize && api->parser_delete && api->set_input_string && api->parse &&
            api->event_delete) {
            return api;
        }
        snprintf(error, error_size, "%s lacks the event parser functions", sonames[i]);
        free(api);
        dlclose(library);
    }
    return NULL;
}

/// A parser reading `size` bytes at `input` (which must outlive it), or NULL.
static inline yaml_parser_t *multipack_yaml_open(const struct multipack_yaml *api, const unsigned char *input,
                                                 size_t size) {
    yaml_parser_t *parser = calloc(1, sizeof *parser);
    if (parser == NULL) return NULL;
    if (!api->parser_initialize(parser)) {
        free(parser);
        return NULL;
    }
    api->set_input_string(parser, input, size);
    return parser;
}

static inline void multipack_yaml_close(const struct multipack_yaml *api, yaml_parser_t *parser) {
    api->parser_delete(parser);
    free(parser);
}

/// The next event into `event`; 0 on a parse error (see the parser's problem fields).
static inline int multipack_yaml_next(const struct multipack_yaml *api, yaml_parser_t *parser,
                                      yaml_event_t *event) {
    return api->parse(parser, event);
}

static inline void multipack_yaml_event_free(const struct multipack_yaml *api, yaml_event_t *event) {
    api->event_delete(event);
}

/// The anchor an event defines (scalar, sequence or mapping start) or names (alias), or NULL.
static inline const unsigned char *multipack_yaml_anchor(const yaml_event_t *event) {
    switch (event->type) {
    case YAML_ALIAS_EVENT: return event->data.alias.anchor;
    case YAML_SCALAR_EVENT: return event->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT: return event->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT: return event->data.mapping_start.anchor;
    default: return NULL;
    }
}

#endif
