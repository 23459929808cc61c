/* H1P through the C ABI (include/polyphony.h) against nodejs' http-parser 2.9 (Debian's
 * libhttp-parser-dev, the parser inside http_parser.rb), same run, same requests: both
 * collect the method, the path and every header as (pointer, length) spans.
 * Build and run with bench/h1p_c.sh. */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyphony.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(1); }
  static char buf[8192];
  *len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return buf;
}

struct spans {
  const char *url; size_t url_len;
  const char *names[64]; size_t name_lens[64];
  const char *values[64]; size_t value_lens[64];
  int n;
  int done;
};

static int on_url(http_parser *p, const char *at, size_t len) {
  struct spans *s = p->data; s->url = at; s->url_len = len; return 0;
}
static int on_field(http_parser *p, const char *at, size_t len) {
  struct spans *s = p->data; s->names[s->n] = at; s->name_lens[s->n] = len; return 0;
}
static int on_value(http_parser *p, const char *at, size_t len) {
  struct spans *s = p->data; s->values[s->n] = at; s->value_lens[s->n++] = len; return 0;
}
static int on_headers_complete(http_parser *p) {
  struct spans *s = p->data; s->done = 1; return 0;
}

int main(int argc, char **argv) {
  long count = argc > 1 ? atol(argv[1]) : 2000000;
  const char *files[] = {"bench/request.bin", "bench/request-small.bin"};
  for (int f = 0; f < 2; f++) {
    size_t len;
    char *req = slurp(files[f], &len);
    double best_ours = 1e9, best_peer = 1e9;
    for (int run = 0; run < 3; run++) {
      polyphony_h1p_message message;
      size_t num_headers;
      polyphony_h1p_header headers[64];
      double t = now();
      for (long i = 0; i < count; i++) {
        num_headers = 64;
        if (polyphony_h1p_parse_request(req, len, &message, headers, &num_headers) != POLYPHONY_RESULT_OK ||
            message.head_len != len) {
          fprintf(stderr, "H1P failed: %s\n", polyphony_last_error());
          return 1;
        }
      }
      double ours = (now() - t) * 1e9 / count;
      if (ours < best_ours) best_ours = ours;

      http_parser_settings settings;
      memset(&settings, 0, sizeof settings);
      settings.on_url = on_url;
      settings.on_header_field = on_field;
      settings.on_header_value = on_value;
      settings.on_headers_complete = on_headers_complete;
      http_parser parser;
      struct spans spans;
      t = now();
      for (long i = 0; i < count; i++) {
        http_parser_init(&parser, HTTP_REQUEST);
        spans.n = 0;
        spans.done = 0;
        parser.data = &spans;
        if (http_parser_execute(&parser, &settings, req, len) != len || !spans.done) {
          fprintf(stderr, "http-parser failed\n");
          return 1;
        }
      }
      double peer = (now() - t) * 1e9 / count;
      if (peer < best_peer) best_peer = peer;
    }
    printf("%s (%zu bytes), best of 3 x %ld:\n", files[f], len, count);
    printf("  H1P (C ABI)        %7.1f ns/request\n", best_ours);
    printf("  http-parser 2.9    %7.1f ns/request\n", best_peer);
    printf("  H1P is %.2fx faster\n", best_peer / best_ours);
  }
  return 0;
}
