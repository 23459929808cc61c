/* Polyphony's event loop driven from C, on both backends: a read that waits for a writer, an
 * accept, a poll, a wake-up from another thread, a cancelled read, then callbacks (connect, a
 * timeout, a read) under polyphony_loop_run; with the ABI's conventions (one status type, the
 * last error's message, NULL refused). Exits non-zero, naming the failed check, on any
 * mismatch. Built and run by spec/capi/loop_c_spec.rb and, through pkg-config, by
 * spec/capi/pkgconfig_spec.rb. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "polyphony.h"

#define OK POLYPHONY_RESULT_OK

/* Ids reported complete so far (a wait may report several). */
static uint64_t seen[256];
static size_t nseen = 0;

/* Waits until `id` completes (at most ~2 s). */
static int wait_for(polyphony_loop *loop, uint64_t id) {
  for (int round = 0; round < 200; round++) {
    for (size_t i = 0; i < nseen; i++)
      if (seen[i] == id) return 1;
    uint64_t done[16];
    size_t n = 0;
    CHECK(polyphony_loop_wait(loop, 10, done, 16, &n) == OK);
    for (size_t i = 0; i < n && nseen < 256; i++) seen[nseen++] = done[i];
  }
  return 0;
}

static void *wake_later(void *waker) {
  usleep(20000);
  CHECK(polyphony_waker_wake(waker) == OK);
  return NULL;
}

/* A listening socket on 127.0.0.1; its address in `addr`. */
static int listen_local(struct sockaddr_in *addr) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof *addr;
  CHECK(bind(listener, (struct sockaddr *)addr, sizeof *addr) == 0);
  CHECK(listen(listener, 8) == 0);
  CHECK(getsockname(listener, (struct sockaddr *)addr, &len) == 0);
  return listener;
}

static int fired = 0;
static polyphony_result connected = POLYPHONY_RESULT_INTERNAL_ERROR;
static char echoed[16];

static void on_timeout(void *userdata, const polyphony_completion *c) {
  CHECK(c->result == OK && c->value == 0 && c->data == NULL);
  fired++;
  CHECK(polyphony_loop_stop(userdata) == OK);
}

static void on_connect(void *userdata, const polyphony_completion *c) {
  (void)userdata;
  connected = c->result;
}

static void on_read(void *userdata, const polyphony_completion *c) {
  (void)userdata;
  CHECK(c->result == OK && c->value == 2 && c->data != NULL);
  if (c->data) memcpy(echoed, c->data, 2);
}

/* The callback style: connect, a read and a timeout, driven by polyphony_loop_run; and an op
 * without a callback, whose completion the run leaves for polyphony_loop_wait. */
static void run_callbacks(polyphony_loop *loop) {
  struct sockaddr_in addr;
  int listener = listen_local(&addr);
  int client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  uint64_t id = 0;
  CHECK(polyphony_loop_submit_connect(loop, client, (struct sockaddr *)&addr, sizeof addr, on_connect, NULL, &id) ==
        OK);
  CHECK(id != 0);
  int fds[2];
  CHECK(pipe(fds) == 0);
  CHECK(write(fds[1], "hi", 2) == 2);
  CHECK(polyphony_loop_submit_read(loop, fds[0], 16, on_read, NULL, NULL) == OK); /* the id is optional */
  uint64_t plain;
  CHECK(polyphony_loop_poll(loop, fds[1], POLLOUT, &plain) == OK);
  struct timespec before, after;
  clock_gettime(CLOCK_MONOTONIC, &before);
  CHECK(polyphony_loop_submit_timeout(loop, 30, on_timeout, loop, NULL) == OK);
  CHECK(polyphony_loop_run(loop) == OK);
  clock_gettime(CLOCK_MONOTONIC, &after);
  long elapsed_ms = (after.tv_sec - before.tv_sec) * 1000 + (after.tv_nsec - before.tv_nsec) / 1000000;
  CHECK(fired == 1);
  CHECK(elapsed_ms >= 29);
  CHECK(connected == OK);
  CHECK(memcmp(echoed, "hi", 2) == 0);
  /* The poll without a callback is still there to be reported. */
  CHECK(wait_for(loop, plain));
  polyphony_completion c;
  CHECK(polyphony_loop_take(loop, plain, &c) == OK && (c.value & POLLOUT) != 0);

  /* A callback is required by the submit_ forms. */
  CHECK(polyphony_loop_submit_read(loop, fds[0], 16, NULL, NULL, &id) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(polyphony_last_error(), "the callback is NULL") == 0);
  CHECK(polyphony_loop_submit_timeout(loop, 1, NULL, NULL, NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  /* Nothing with a callback left: the run returns at once. */
  CHECK(polyphony_loop_run(loop) == OK);
  close(fds[0]);
  close(fds[1]);
  close(client);
  close(listener);
  fired = 0;
  connected = POLYPHONY_RESULT_INTERNAL_ERROR;
}

static void run(int kind) {
  nseen = 0; /* ids are per loop */
  polyphony_loop *loop = NULL;
  CHECK(polyphony_loop_new(kind, &loop) == OK);
  if (!loop) return;
  int actual = -1;
  CHECK(polyphony_loop_kind(loop, &actual) == OK && actual == kind);

  /* A read waits until the writer's bytes arrive. */
  int fds[2];
  CHECK(pipe(fds) == 0);
  uint64_t rd, wr;
  CHECK(polyphony_loop_read(loop, fds[0], 64, &rd) == OK);
  uint64_t none[4];
  size_t n = 99;
  CHECK(polyphony_loop_wait(loop, 0, none, 4, &n) == OK && n == 0);
  polyphony_completion c;
  CHECK(polyphony_loop_take(loop, rd, &c) == POLYPHONY_RESULT_INCOMPLETE);
  CHECK(polyphony_loop_write(loop, fds[1], "hello", 5, &wr) == OK);
  CHECK(wait_for(loop, wr));
  CHECK(polyphony_loop_take(loop, wr, &c) == OK && c.id == wr && c.value == 5 && c.data == NULL);
  CHECK(wait_for(loop, rd));
  CHECK(polyphony_loop_take(loop, rd, &c) == OK && c.result == OK && c.value == 5);
  CHECK(c.data != NULL && memcmp(c.data, "hello", 5) == 0); /* the loop's bytes, no copy */
  CHECK(polyphony_loop_take(loop, rd, &c) == POLYPHONY_RESULT_INVALID_ARGUMENT); /* taken once */
  CHECK(strstr(polyphony_last_error(), "no operation") != NULL);

  /* A failed operation: its completion says so, with the errno. */
  uint64_t bad;
  CHECK(polyphony_loop_read(loop, 9999, 8, &bad) == OK); /* no such descriptor */
  CHECK(wait_for(loop, bad));
  CHECK(polyphony_loop_take(loop, bad, &c) == OK && c.result == POLYPHONY_RESULT_SYSTEM_ERROR && c.error == EBADF);

  /* Accept a connection. */
  struct sockaddr_in addr;
  int listener = listen_local(&addr);
  uint64_t acc;
  CHECK(polyphony_loop_accept(loop, listener, &acc) == OK);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(client, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK(wait_for(loop, acc));
  CHECK(polyphony_loop_take(loop, acc, &c) == OK && c.result == OK);
  int conn = (int)c.value;

  /* Poll: the connection becomes readable once the client writes. */
  uint64_t pl;
  CHECK(polyphony_loop_poll(loop, conn, POLLIN, &pl) == OK);
  CHECK(write(client, "x", 1) == 1);
  CHECK(wait_for(loop, pl));
  CHECK(polyphony_loop_take(loop, pl, &c) == OK && (c.value & POLLIN) != 0);

  /* A wake-up from another thread ends a wait with no limit. */
  polyphony_waker *waker = NULL;
  CHECK(polyphony_loop_waker(loop, &waker) == OK);
  pthread_t thread;
  pthread_create(&thread, NULL, wake_later, waker);
  CHECK(polyphony_loop_wait(loop, -1, none, 4, &n) == OK && n == 0);
  pthread_join(thread, NULL);
  polyphony_waker_free(waker);

  /* A cancelled read is never reported and its buffer is the loop's problem. */
  uint64_t cancelled;
  CHECK(polyphony_loop_read(loop, fds[0], 4096, &cancelled) == OK);
  CHECK(polyphony_loop_wait(loop, 0, none, 4, &n) == OK && n == 0);
  CHECK(polyphony_loop_cancel(loop, cancelled) == OK);
  CHECK(polyphony_loop_wait(loop, 20, none, 4, &n) == OK && n == 0);
  CHECK(polyphony_loop_cancel(loop, cancelled) == POLYPHONY_RESULT_INVALID_ARGUMENT);

  /* NULL where a pointer is needed: refused, nothing started. */
  CHECK(polyphony_loop_read(loop, fds[0], 8, NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(polyphony_last_error(), "id is NULL") == 0);
  CHECK(polyphony_loop_read(NULL, fds[0], 8, &rd) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(polyphony_last_error(), "event_loop is NULL") == 0);
  CHECK(polyphony_loop_write(loop, fds[1], NULL, 3, &wr) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_loop_wait(loop, 0, NULL, 4, &n) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_loop_take(loop, 1, NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);

  close(conn);
  close(client);
  close(listener);
  close(fds[0]);
  close(fds[1]);
  run_callbacks(loop);
  polyphony_loop_free(loop);
}

int main(void) {
  run(POLYPHONY_LOOP_IO_URING);
  run(POLYPHONY_LOOP_EPOLL);
  polyphony_loop *loop = NULL;
  CHECK(polyphony_loop_new(POLYPHONY_LOOP_AUTO, &loop) == OK);
  polyphony_loop_free(loop);
  polyphony_loop_free(NULL);
  loop = NULL;
  CHECK(polyphony_loop_new(99, &loop) == POLYPHONY_RESULT_INVALID_ARGUMENT && loop == NULL);
  CHECK(strcmp(polyphony_last_error(), "unknown loop kind 99") == 0);
  CHECK(polyphony_loop_new(POLYPHONY_LOOP_AUTO, NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_loop_stop(NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  CHECK(polyphony_waker_wake(NULL) == POLYPHONY_RESULT_NULL_ARGUMENT);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("event loop C ABI: all checks passed");
  return 0;
}
