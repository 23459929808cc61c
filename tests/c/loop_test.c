/* Polyphony's event loop driven from C, on both backends: a read that waits for a writer, an
 * accept, a poll, a wake-up from another thread and a cancelled read. Exits non-zero, naming
 * the failed check, on any mismatch. Built and run by spec/capi/loop_c_spec.rb. */
#include <arpa/inet.h>
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

/* Ids reported complete so far (a wait may report several). */
static uint64_t seen[256];
static int nseen = 0;

/* Waits until `id` completes (at most ~2 s). */
static int wait_for(polyphony_loop *loop, uint64_t id) {
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < nseen; i++)
      if (seen[i] == id) return 1;
    uint64_t done[16];
    int n = polyphony_loop_wait(loop, 10, done, 16);
    for (int i = 0; i < n && nseen < 256; i++) seen[nseen++] = done[i];
  }
  return 0;
}

static void *wake_later(void *waker) {
  usleep(20000);
  polyphony_waker_wake(waker);
  return NULL;
}

static int fired = 0;
static ptrdiff_t connected = 1;

static void on_timeout(void *userdata, ptrdiff_t result, const void *data) {
  (void)data;
  CHECK(result == 0);
  fired++;
  polyphony_loop_stop(userdata);
}

static void on_connect(void *userdata, ptrdiff_t result, const void *data) {
  (void)userdata;
  (void)data;
  connected = result;
}

/* The callback style: connect and a timeout, driven by polyphony_loop_run. */
static void run_callbacks(polyphony_loop *loop) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK(listen(listener, 8) == 0);
  CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
  int client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  CHECK(polyphony_loop_submit_connect(loop, client, (struct sockaddr *)&addr, sizeof addr, on_connect, NULL) != 0);
  struct timespec before, after;
  clock_gettime(CLOCK_MONOTONIC, &before);
  CHECK(polyphony_loop_submit_timeout(loop, 30, on_timeout, loop) != 0);
  CHECK(polyphony_loop_run(loop) == 0);
  clock_gettime(CLOCK_MONOTONIC, &after);
  long elapsed_ms = (after.tv_sec - before.tv_sec) * 1000 + (after.tv_nsec - before.tv_nsec) / 1000000;
  CHECK(fired == 1);
  CHECK(elapsed_ms >= 29);
  CHECK(connected == 0);
  close(client);
  close(listener);
  fired = 0;
  connected = 1;
}

static void run(int kind) {
  nseen = 0; /* ids are per loop */
  polyphony_loop *loop = polyphony_loop_new(kind);
  CHECK(loop != NULL);
  if (!loop) return;
  CHECK(polyphony_loop_kind(loop) == kind);

  /* A read waits until the writer's bytes arrive. */
  int fds[2];
  CHECK(pipe(fds) == 0);
  uint64_t rd = polyphony_loop_read(loop, fds[0], 64);
  uint64_t none[4];
  CHECK(polyphony_loop_wait(loop, 0, none, 4) == 0);
  uint64_t wr = polyphony_loop_write(loop, fds[1], "hello", 5);
  CHECK(wait_for(loop, wr));
  CHECK(polyphony_loop_take(loop, wr, NULL, 0) == 5);
  CHECK(wait_for(loop, rd));
  char buf[64] = {0};
  CHECK(polyphony_loop_take(loop, rd, buf, sizeof buf) == 5);
  CHECK(memcmp(buf, "hello", 5) == 0);
  CHECK(polyphony_loop_take(loop, rd, buf, sizeof buf) < 0); /* taken once */

  /* Accept a connection. */
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK(listen(listener, 8) == 0);
  CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
  uint64_t acc = polyphony_loop_accept(loop, listener);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(client, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK(wait_for(loop, acc));
  long conn = (long)polyphony_loop_take(loop, acc, NULL, 0);
  CHECK(conn >= 0);

  /* Poll: the connection becomes readable once the client writes. */
  uint64_t pl = polyphony_loop_poll(loop, (int)conn, POLLIN);
  CHECK(write(client, "x", 1) == 1);
  CHECK(wait_for(loop, pl));
  CHECK((polyphony_loop_take(loop, pl, NULL, 0) & POLLIN) != 0);

  /* A wake-up from another thread ends a wait with no limit. */
  polyphony_waker *waker = polyphony_loop_waker(loop);
  pthread_t thread;
  pthread_create(&thread, NULL, wake_later, waker);
  CHECK(polyphony_loop_wait(loop, -1, none, 4) == 0);
  pthread_join(thread, NULL);
  polyphony_waker_free(waker);

  /* A cancelled read is never reported and its buffer is the loop's problem. */
  uint64_t cancelled = polyphony_loop_read(loop, fds[0], 4096);
  CHECK(polyphony_loop_wait(loop, 0, none, 4) == 0);
  CHECK(polyphony_loop_cancel(loop, cancelled) == 0);
  CHECK(polyphony_loop_wait(loop, 20, none, 4) == 0);

  close((int)conn);
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
  polyphony_loop_free(polyphony_loop_new(POLYPHONY_LOOP_AUTO));
  CHECK(polyphony_loop_new(99) == NULL);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("event loop C ABI: all checks passed");
  return 0;
}
