/* Reads HTTP/1 requests from standard input with H1P's pull parser and prints a line for each:
 * method, target, the number of fields, the body's size and the trailer fields; pipelined
 * requests, chunked bodies and any split of the input are fine. An optional argument caps the
 * body's size. Exits 1 with H1P's reason on the first bad request.
 *
 *   rake capi PREFIX=$HOME/.local
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig LD_LIBRARY_PATH=$HOME/.local/lib
 *   cc examples/c/requests.c $(pkg-config --cflags --libs polyphony) -o requests
 *   printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | ./requests
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <polyphony.h>

static ptrdiff_t read_stdin(void *ctx, char *buf, size_t capacity) {
  (void)ctx;
  return read(STDIN_FILENO, buf, capacity);
}

static int fail(const char *doing, polyphony_result result) {
  fprintf(stderr, "requests: %s: %s (%s)\n", doing, polyphony_last_error(), polyphony_result_name(result));
  return 1;
}

int main(int argc, char **argv) {
  polyphony_h1p_limits limits;
  polyphony_h1p_limits_default(&limits);
  if (argc > 1) limits.max_body = strtoull(argv[1], NULL, 10);
  polyphony_h1p_parser *parser;
  polyphony_result result = polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_stdin, NULL, &limits, &parser);
  if (result != POLYPHONY_RESULT_OK) return fail("making the parser", result);

  int status = 0;
  for (;;) {
    polyphony_h1p_message request;
    polyphony_h1p_header headers[64];
    size_t num_headers = 64;
    result = polyphony_h1p_parser_parse_headers(parser, &request, headers, &num_headers);
    if (result == POLYPHONY_RESULT_END) break;
    if (result != POLYPHONY_RESULT_OK) {
      status = fail("reading a head", result);
      break;
    }
    unsigned long long body = 0;
    const char *data;
    size_t len;
    while ((result = polyphony_h1p_parser_read_body_chunk(parser, &data, &len)) == POLYPHONY_RESULT_OK) body += len;
    if (result != POLYPHONY_RESULT_END) {
      status = fail("reading a body", result);
      break;
    }
    printf("%.*s %.*s HTTP/1.%d, %zu fields, %llu body bytes", (int)request.method_len, request.method,
           (int)request.path_len, request.path, request.minor_version, num_headers, body);
    polyphony_h1p_header trailers[16];
    size_t num_trailers = 16;
    if (polyphony_h1p_parser_trailers(parser, trailers, &num_trailers) == POLYPHONY_RESULT_OK)
      for (size_t i = 0; i < num_trailers; i++)
        printf(", trailer %.*s: %.*s", (int)trailers[i].name_len, trailers[i].name, (int)trailers[i].value_len,
               trailers[i].value);
    printf("\n");
    if (!request.keep_alive) break;
  }
  polyphony_h1p_parser_free(parser);
  return status;
}
