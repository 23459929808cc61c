/* The C ABI of H1P, exercised from C: zero-copy request and response parsing, response heads,
 * and the pull parser reading pipelined requests from a pipe through a callback; with the
 * ABI's conventions (one status type, the last error's message, NULL refused). Exits non-zero,
 * naming the failed check, on any mismatch. Built and run by spec/capi/h1p_c_spec.rb and,
 * through pkg-config, by spec/capi/pkgconfig_spec.rb. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "polyphony.h"

static int eq(const char *p, size_t len, const char *s) {
  return len == strlen(s) && memcmp(p, s, len) == 0;
}

static int said(const char *part) { return strstr(polyphony_last_error(), part) != NULL; }

static void zero_copy_request(void) {
  const char *req = "GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nrest";
  polyphony_h1p_message m;
  polyphony_h1p_header headers[8];
  size_t num_headers = 8;
  CHECK(polyphony_h1p_parse_request(req, strlen(req), &m, headers, &num_headers) == POLYPHONY_RESULT_OK);
  CHECK(m.head_len == strlen(req) - 4);
  CHECK(eq(m.method, m.method_len, "GET"));
  CHECK(eq(m.path, m.path_len, "/hello?x=1"));
  CHECK(m.path >= req && m.path < req + strlen(req)); /* zero-copy: points into the buffer */
  CHECK(m.minor_version == 1 && m.keep_alive == 1 && m.body == POLYPHONY_H1P_BODY_NONE);
  CHECK(num_headers == 2);
  CHECK(eq(headers[0].name, headers[0].name_len, "Host"));
  CHECK(eq(headers[1].value, headers[1].value_len, "*/*"));

  const char *post = "POST /up HTTP/1.0\r\nContent-Length: 12\r\n\r\n";
  num_headers = 8;
  CHECK(polyphony_h1p_parse_request(post, strlen(post), &m, headers, &num_headers) == POLYPHONY_RESULT_OK);
  CHECK(m.body == POLYPHONY_H1P_BODY_LENGTH && m.content_length == 12 && m.keep_alive == 0);

  /* Not all there yet: nothing written. */
  num_headers = 8;
  m.head_len = 12345;
  CHECK(polyphony_h1p_parse_request(req, 20, &m, headers, &num_headers) == POLYPHONY_RESULT_INCOMPLETE);
  CHECK(m.head_len == 12345 && num_headers == 8);

  const char *smuggle = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
  CHECK(polyphony_h1p_parse_request(smuggle, strlen(smuggle), &m, headers, &num_headers) ==
        POLYPHONY_RESULT_INVALID_MESSAGE);
  CHECK(strcmp(polyphony_last_error(), "repeated Content-Length") == 0);

  num_headers = 1; /* fewer slots than fields */
  CHECK(polyphony_h1p_parse_request(req, strlen(req), &m, headers, &num_headers) == POLYPHONY_RESULT_TOO_LARGE);
  CHECK(said("header count"));

  /* NULL where a pointer is needed: refused, named. */
  num_headers = 8;
  CHECK(polyphony_h1p_parse_request(req, strlen(req), NULL, headers, &num_headers) ==
        POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(polyphony_last_error(), "message is NULL") == 0);
  CHECK(polyphony_h1p_parse_request(req, strlen(req), &m, NULL, &num_headers) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_h1p_parse_request(NULL, 3, &m, headers, &num_headers) == POLYPHONY_RESULT_NULL_ARGUMENT);
  /* No bytes at all is only incomplete; no slots is fine for a head without fields. */
  CHECK(polyphony_h1p_parse_request(NULL, 0, &m, headers, &num_headers) == POLYPHONY_RESULT_INCOMPLETE);
  size_t none = 0;
  CHECK(polyphony_h1p_parse_request("GET / HTTP/1.1\r\n\r\n", 18, &m, NULL, &none) == POLYPHONY_RESULT_OK);

  /* A success leaves the last error as it was, as errno is left. */
  CHECK(strcmp(polyphony_last_error(), "buf is NULL") == 0);
}

static void zero_copy_response(void) {
  const char *res = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  polyphony_h1p_message m;
  polyphony_h1p_header headers[4];
  size_t num_headers = 4;
  CHECK(polyphony_h1p_parse_response(res, strlen(res), &m, headers, &num_headers) == POLYPHONY_RESULT_OK);
  CHECK(m.head_len == strlen(res));
  CHECK(m.minor_version == 0 && m.status == 404);
  CHECK(eq(m.reason, m.reason_len, "Not Found"));
  CHECK(num_headers == 1);
}

static ptrdiff_t read_fd(void *ctx, char *buf, size_t capacity) {
  /* Short reads on purpose: the parser must cope with any split. */
  return read(*(int *)ctx, buf, capacity < 7 ? capacity : 7);
}

/* A pipe holding `input`, its write end closed: the read end. */
static int pipe_of(const char *input) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  CHECK(write(fds[1], input, strlen(input)) == (ssize_t)strlen(input));
  close(fds[1]);
  return fds[0];
}

static void pull_parser(void) {
  int fd = pipe_of("POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"
                   "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  polyphony_h1p_parser *parser = NULL;
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fd, &fd, NULL, &parser) == POLYPHONY_RESULT_OK);
  CHECK(parser != NULL);
  polyphony_h1p_message message;
  polyphony_h1p_header headers[8];
  size_t num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_OK);
  CHECK(eq(message.method, message.method_len, "POST"));
  CHECK(eq(message.path, message.path_len, "/upload"));
  CHECK(message.body == POLYPHONY_H1P_BODY_CHUNKED && message.keep_alive == 1);

  char body[64];
  size_t body_len = 0, len;
  const char *data;
  polyphony_result r;
  while ((r = polyphony_h1p_parser_read_body_chunk(parser, &data, &len)) == POLYPHONY_RESULT_OK) {
    CHECK(len > 0 && body_len + len <= sizeof body);
    memcpy(body + body_len, data, len);
    body_len += len;
  }
  CHECK(r == POLYPHONY_RESULT_END && len == 0);
  CHECK(eq(body, body_len, "hello world"));
  polyphony_h1p_header trailers[2];
  size_t num_trailers = 0; /* no slots: says how many there are */
  CHECK(polyphony_h1p_parser_trailers(parser, NULL, &num_trailers) == POLYPHONY_RESULT_TOO_LARGE);
  CHECK(num_trailers == 1);
  num_trailers = 2;
  CHECK(polyphony_h1p_parser_trailers(parser, trailers, &num_trailers) == POLYPHONY_RESULT_OK);
  CHECK(num_trailers == 1);
  CHECK(eq(trailers[0].name, trailers[0].name_len, "x-checksum"));
  CHECK(eq(trailers[0].value, trailers[0].value_len, "42"));

  num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_OK);
  CHECK(eq(message.path, message.path_len, "/next"));
  CHECK(message.body == POLYPHONY_H1P_BODY_NONE && num_headers == 1);
  num_trailers = 2;
  CHECK(polyphony_h1p_parser_trailers(parser, trailers, &num_trailers) == POLYPHONY_RESULT_OK && num_trailers == 0);
  num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_END);
  polyphony_h1p_parser_free(parser);
  close(fd);

  parser = NULL;
  CHECK(polyphony_h1p_parser_new(7, read_fd, NULL, NULL, &parser) == POLYPHONY_RESULT_INVALID_ARGUMENT);
  CHECK(said("unknown parser mode 7") && parser == NULL);
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, NULL, NULL, NULL, &parser) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(polyphony_last_error(), "the read callback is NULL") == 0 && parser == NULL);
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fd, NULL, NULL, NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_h1p_parser_parse_headers(NULL, &message, headers, &num_headers) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(polyphony_last_error(), "parser is NULL") == 0);
  polyphony_h1p_parser_free(NULL);
}

/* Limits set from C: a field value over 8 bytes is refused, the error naming the limit. */
static void parser_limits(void) {
  polyphony_h1p_limits limits;
  CHECK(polyphony_h1p_limits_default(&limits) == POLYPHONY_RESULT_OK);
  CHECK(limits.header_value == 2048 && limits.headers == 256 && limits.max_body == 0);
  CHECK(polyphony_h1p_limits_default(NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  limits.header_value = 8;
  int fd = pipe_of("GET / HTTP/1.1\r\nX-Long: 0123456789\r\n\r\n");
  polyphony_h1p_parser *parser;
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fd, &fd, &limits, &parser) == POLYPHONY_RESULT_OK);
  polyphony_h1p_message message;
  polyphony_h1p_header headers[8];
  size_t num_headers = 8;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_TOO_LARGE);
  CHECK(strcmp(polyphony_last_error(), "header value length exceeds the limit of 8") == 0);
  polyphony_h1p_parser_free(parser);
  close(fd);
}

static ptrdiff_t read_garbage(void *ctx, char *buf, size_t capacity) {
  const char *bad = "GET / HTTP/1.1\r\nX-A: one\rtwo\r\n\r\n";
  size_t *done = ctx;
  if (*done) return 0;
  *done = 1;
  memcpy(buf, bad, strlen(bad) < capacity ? strlen(bad) : capacity);
  return (ptrdiff_t)strlen(bad);
}

static ptrdiff_t read_fails(void *ctx, char *buf, size_t capacity) {
  (void)ctx, (void)buf, (void)capacity;
  return -5;
}

/* Each way a pull parser's call can fail, with its own status. */
static void pull_parser_failures(void) {
  polyphony_h1p_message message;
  polyphony_h1p_header headers[4];
  size_t num_headers = 4, len;
  const char *data;
  size_t done = 0;
  polyphony_h1p_parser *parser;
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_garbage, &done, NULL, &parser) == POLYPHONY_RESULT_OK);
  /* Reading a body before any head is a call out of order. */
  CHECK(polyphony_h1p_parser_read_body_chunk(parser, &data, &len) == POLYPHONY_RESULT_INVALID_STATE);
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) ==
        POLYPHONY_RESULT_INVALID_MESSAGE);
  CHECK(strcmp(polyphony_last_error(), "CR not followed by LF") == 0);
  polyphony_h1p_parser_free(parser);

  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fails, NULL, NULL, &parser) == POLYPHONY_RESULT_OK);
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_READ_ERROR);
  CHECK(said("(-5)"));
  polyphony_h1p_parser_free(parser);

  /* The input ends inside a head, then inside a body. */
  int fd = pipe_of("GET / HTTP/1.1\r\nHost");
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fd, &fd, NULL, &parser) == POLYPHONY_RESULT_OK);
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_TRUNCATED);
  polyphony_h1p_parser_free(parser);
  close(fd);
  fd = pipe_of("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(polyphony_h1p_parser_new(POLYPHONY_H1P_SERVER, read_fd, &fd, NULL, &parser) == POLYPHONY_RESULT_OK);
  num_headers = 4;
  CHECK(polyphony_h1p_parser_parse_headers(parser, &message, headers, &num_headers) == POLYPHONY_RESULT_OK);
  polyphony_result r;
  while ((r = polyphony_h1p_parser_read_body_chunk(parser, &data, &len)) == POLYPHONY_RESULT_OK) {
  }
  CHECK(r == POLYPHONY_RESULT_TRUNCATED);
  polyphony_h1p_parser_free(parser);
  close(fd);
}

static void response_head(void) {
  polyphony_h1p_header fields[2] = {{"Content-Type", 12, "text/plain", 10}, {"X-A", 3, "1", 1}};
  char buf[256];
  polyphony_h1p_response_info info;
  CHECK(polyphony_h1p_response_head(200, fields, 2, 5, POLYPHONY_H1P_REQUEST_REUSABLE, buf, sizeof buf, &info) ==
        POLYPHONY_RESULT_OK);
  const char *expected = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n";
  CHECK(eq(buf, info.head_len, expected));
  CHECK(info.framing == POLYPHONY_H1P_FRAMING_LENGTH && info.content_length == 5 && info.keep_alive == 1);

  /* Unknown size to an HTTP/1.0 client: until close, and the head says so. */
  CHECK(polyphony_h1p_response_head(200, NULL, 0, -1, POLYPHONY_H1P_REQUEST_HTTP10 | POLYPHONY_H1P_REQUEST_REUSABLE,
                                    buf, sizeof buf, &info) == POLYPHONY_RESULT_OK);
  CHECK(eq(buf, info.head_len, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
  CHECK(info.framing == POLYPHONY_H1P_FRAMING_UNTIL_CLOSE && info.keep_alive == 0);

  /* Too small a buffer: the length needed, nothing else written. */
  info.framing = -1;
  CHECK(polyphony_h1p_response_head(204, NULL, 0, 0, 0, buf, 4, &info) == POLYPHONY_RESULT_BUFFER_TOO_SMALL);
  CHECK(info.head_len == strlen("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n") && info.framing == -1);
  CHECK(polyphony_h1p_response_head(204, NULL, 0, 0, 0, NULL, 0, &info) == POLYPHONY_RESULT_BUFFER_TOO_SMALL);

  /* A value that would split the response is refused. */
  polyphony_h1p_header evil = {"X-A", 3, "1\r\nSet-Cookie: x", 17};
  CHECK(polyphony_h1p_response_head(200, &evil, 1, 0, 0, buf, sizeof buf, &info) == POLYPHONY_RESULT_INVALID_RESPONSE);
  CHECK(said("header value"));
  CHECK(polyphony_h1p_response_head(200, NULL, 1, 0, 0, buf, sizeof buf, &info) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_h1p_response_head(200, NULL, 0, 0, 0, buf, sizeof buf, NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
}

static void conventions(void) {
  CHECK(strcmp(polyphony_result_name(POLYPHONY_RESULT_TOO_LARGE), "POLYPHONY_RESULT_TOO_LARGE") == 0);
  CHECK(strcmp(polyphony_result_name(1234), "POLYPHONY_RESULT_UNKNOWN") == 0);
  CHECK(POLYPHONY_RESULT_OK == 0 && POLYPHONY_RESULT_NULL_ARGUMENT < 0 && POLYPHONY_RESULT_END > 0);
  CHECK(strlen(polyphony_version()) >= 5);
}

int main(void) {
  CHECK(strcmp(polyphony_last_error(), "") == 0); /* no failure yet on this thread */
  zero_copy_request();
  response_head();
  zero_copy_response();
  pull_parser();
  parser_limits();
  pull_parser_failures();
  conventions();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("h1p C ABI: all checks passed");
  return 0;
}
