/* The C ABI of H1P, exercised from C: zero-copy request and response parsing, and the pull
 * parser reading pipelined requests from a pipe through a callback. Exits non-zero, naming
 * the failed check, on any mismatch. Built and run by spec/capi/h1p_c_spec.rb. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "polyphony.h"

static int eq(const char *p, size_t len, const char *s) {
  return len == strlen(s) && memcmp(p, s, len) == 0;
}

static void zero_copy_request(void) {
  const char *req = "GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nrest";
  const char *method, *path;
  size_t method_len, path_len, num_headers = 8;
  int minor;
  polyphony_h1p_header headers[8];
  int n = polyphony_h1p_parse_request(req, strlen(req), &method, &method_len, &path, &path_len,
                                      &minor, headers, &num_headers, 0);
  CHECK(n == (int)(strlen(req) - 4));
  CHECK(eq(method, method_len, "GET"));
  CHECK(eq(path, path_len, "/hello?x=1"));
  CHECK(path >= req && path < req + strlen(req)); /* zero-copy: points into the buffer */
  CHECK(minor == 1);
  CHECK(num_headers == 2);
  CHECK(eq(headers[0].name, headers[0].name_len, "Host"));
  CHECK(eq(headers[1].value, headers[1].value_len, "*/*"));

  num_headers = 8;
  n = polyphony_h1p_parse_request(req, 20, &method, &method_len, &path, &path_len, &minor,
                                  headers, &num_headers, 0);
  CHECK(n == -2);

  const char *smuggle = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
  num_headers = 8;
  n = polyphony_h1p_parse_request(smuggle, strlen(smuggle), &method, &method_len, &path,
                                  &path_len, &minor, headers, &num_headers, 0);
  CHECK(n == -1);
  CHECK(strcmp(polyphony_h1p_last_error(), "repeated Content-Length") == 0);

  num_headers = 1; /* fewer slots than fields */
  n = polyphony_h1p_parse_request(req, strlen(req), &method, &method_len, &path, &path_len,
                                  &minor, headers, &num_headers, 0);
  CHECK(n == -1);
  CHECK(strstr(polyphony_h1p_last_error(), "header count") != NULL);
}

static void zero_copy_response(void) {
  const char *res = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  const char *message;
  size_t message_len, num_headers = 4;
  int minor, status;
  polyphony_h1p_header headers[4];
  int n = polyphony_h1p_parse_response(res, strlen(res), &minor, &status, &message, &message_len,
                                       headers, &num_headers);
  CHECK(n == (int)strlen(res));
  CHECK(minor == 0 && status == 404);
  CHECK(eq(message, message_len, "Not Found"));
  CHECK(num_headers == 1);
}

static ptrdiff_t read_fd(void *ctx, char *buf, size_t capacity) {
  /* Short reads on purpose: the parser must cope with any split. */
  return read(*(int *)ctx, buf, capacity < 7 ? capacity : 7);
}

static void pull_parser(void) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  const char *input =
      "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(write(fds[1], input, strlen(input)) == (ssize_t)strlen(input));
  close(fds[1]);

  polyphony_h1p_parser *parser = polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fd, &fds[0]);
  CHECK(parser != NULL);
  polyphony_h1p_message message;
  polyphony_h1p_header headers[8];
  size_t num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == 1);
  CHECK(eq(message.method, message.method_len, "POST"));
  CHECK(eq(message.path, message.path_len, "/upload"));
  CHECK(message.body == POLYPHONY_H1P_BODY_CHUNKED && message.keep_alive == 1);

  char body[64];
  size_t body_len = 0;
  const char *data;
  ptrdiff_t n;
  while ((n = polyphony_h1p_parser_read_body_chunk(parser, &data)) > 0) {
    memcpy(body + body_len, data, (size_t)n);
    body_len += (size_t)n;
  }
  CHECK(n == 0);
  CHECK(eq(body, body_len, "hello world"));
  polyphony_h1p_header trailers[2];
  size_t num_trailers = 2;
  CHECK(polyphony_h1p_parser_trailers(parser, trailers, &num_trailers) == 0);
  CHECK(num_trailers == 1);
  CHECK(eq(trailers[0].name, trailers[0].name_len, "x-checksum"));
  CHECK(eq(trailers[0].value, trailers[0].value_len, "42"));

  num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == 1);
  CHECK(eq(message.path, message.path_len, "/next"));
  CHECK(message.body == POLYPHONY_H1P_BODY_NONE && num_headers == 1);
  num_trailers = 2;
  CHECK(polyphony_h1p_parser_trailers(parser, trailers, &num_trailers) == 0 && num_trailers == 0);
  num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == 0);
  polyphony_h1p_parser_free(parser);
  close(fds[0]);

  CHECK(polyphony_h1p_parser_new(7, read_fd, NULL) == NULL);
  CHECK(strstr(polyphony_h1p_last_error(), "unknown parser mode 7") != NULL);
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, NULL, NULL) == NULL);
  CHECK(strstr(polyphony_h1p_last_error(), "NULL read callback") != NULL);
}

/* Limits set from C: a field value over 8 bytes is refused, the error naming the limit. */
static void parser_limits(void) {
  polyphony_h1p_limits limits;
  polyphony_h1p_limits_default(&limits);
  CHECK(limits.header_value == 2048 && limits.headers == 256 && limits.max_body == 0);
  limits.header_value = 8;
  int fds[2];
  CHECK(pipe(fds) == 0);
  const char *input = "GET / HTTP/1.1\r\nX-Long: 0123456789\r\n\r\n";
  CHECK(write(fds[1], input, strlen(input)) == (ssize_t)strlen(input));
  close(fds[1]);
  polyphony_h1p_parser *parser =
      polyphony_h1p_parser_new_with_limits(POLYPHONY_H1P_SERVER, read_fd, &fds[0], &limits);
  CHECK(parser != NULL);
  polyphony_h1p_message message;
  polyphony_h1p_header headers[8];
  size_t num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == -1);
  CHECK(strstr(polyphony_h1p_parser_error(parser), "header value") != NULL);
  polyphony_h1p_parser_free(parser);
  close(fds[0]);
}

static ptrdiff_t read_garbage(void *ctx, char *buf, size_t capacity) {
  const char *bad = "GET / HTTP/1.1\r\nX-A: one\rtwo\r\n\r\n";
  size_t *done = ctx;
  if (*done) return 0;
  *done = 1;
  memcpy(buf, bad, strlen(bad) < capacity ? strlen(bad) : capacity);
  return (ptrdiff_t)strlen(bad);
}

static void pull_parser_error(void) {
  size_t done = 0;
  polyphony_h1p_parser *parser = polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_garbage, &done);
  polyphony_h1p_message message;
  polyphony_h1p_header headers[4];
  size_t num_headers = 4;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == -1);
  CHECK(strcmp(polyphony_h1p_parser_error(parser), "CR not followed by LF") == 0);
  polyphony_h1p_parser_free(parser);
}

static void response_head(void) {
  polyphony_h1p_header fields[2] = {{"Content-Type", 12, "text/plain", 10}, {"X-A", 3, "1", 1}};
  char buf[256];
  int framing = -1, keep_alive = -1;
  uint64_t length = 0;
  int64_t n = polyphony_h1p_response_head(200, fields, 2, 5, POLYPHONY_H1P_REQUEST_REUSABLE, buf,
                                          sizeof buf, &framing, &length, &keep_alive);
  const char *expected = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n";
  CHECK(n == (int64_t)strlen(expected) && memcmp(buf, expected, (size_t)n) == 0);
  CHECK(framing == POLYPHONY_H1P_FRAMING_LENGTH && length == 5 && keep_alive == 1);

  /* Unknown size to an HTTP/1.0 client: until close, and the head says so. */
  n = polyphony_h1p_response_head(200, NULL, 0, -1,
                                  POLYPHONY_H1P_REQUEST_HTTP10 | POLYPHONY_H1P_REQUEST_REUSABLE, buf,
                                  sizeof buf, &framing, &length, &keep_alive);
  CHECK(eq(buf, (size_t)n, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
  CHECK(framing == POLYPHONY_H1P_FRAMING_UNTIL_CLOSE && keep_alive == 0);

  /* Too small a buffer: the length needed, nothing written. */
  framing = -1;
  n = polyphony_h1p_response_head(204, NULL, 0, 0, 0, buf, 4, &framing, &length, &keep_alive);
  CHECK(n == (int64_t)strlen("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n") && framing == -1);

  /* A value that would split the response is refused. */
  polyphony_h1p_header evil = {"X-A", 3, "1\r\nSet-Cookie: x", 17};
  n = polyphony_h1p_response_head(200, &evil, 1, 0, 0, buf, sizeof buf, &framing, &length, &keep_alive);
  CHECK(n == -1 && strstr(polyphony_h1p_last_error(), "header value") != NULL);
}

int main(void) {
  zero_copy_request();
  response_head();
  zero_copy_response();
  pull_parser();
  parser_limits();
  pull_parser_error();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("h1p C ABI: all checks passed");
  return 0;
}
