/* An echo server in C on Polyphony's event loop (io_uring, or epoll with argument "epoll"):
 * callbacks only, no threads. Prints its port, serves connections concurrently, and exits
 * after `max` connections have closed.
 *
 *   cargo build --release -p polyphony-capi
 *   cc -Iinclude examples/c/echo_server.c target/release/libpolyphony_capi.a -lpthread -ldl -lm \
 *      -o echo_server
 *   ./echo_server 3            # then: ruby -rsocket -e 's = TCPSocket.new("127.0.0.1", PORT) ...'
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "polyphony.h"

static polyphony_loop *loop;
static int listener;
static int max_connections;
static int closed_connections = 0;

struct connection {
  int fd;
};

static void on_read(void *userdata, ptrdiff_t result, const void *data);

static void on_written(void *userdata, ptrdiff_t result, const void *data) {
  (void)data;
  struct connection *conn = userdata;
  if (result < 0 || !polyphony_loop_submit_read(loop, conn->fd, 4096, on_read, conn)) {
    close(conn->fd);
    free(conn);
    closed_connections++;
  }
}

static void on_read(void *userdata, ptrdiff_t result, const void *data) {
  struct connection *conn = userdata;
  if (result <= 0) { /* EOF or error: this connection is done */
    close(conn->fd);
    free(conn);
    if (++closed_connections >= max_connections) polyphony_loop_stop(loop);
    return;
  }
  /* The loop copies the bytes: `data` is only valid during this call. */
  polyphony_loop_submit_write(loop, conn->fd, data, (size_t)result, on_written, conn);
}

static void on_accept(void *userdata, ptrdiff_t result, const void *data) {
  (void)userdata;
  (void)data;
  if (result >= 0) {
    struct connection *conn = malloc(sizeof *conn);
    conn->fd = (int)result;
    polyphony_loop_submit_read(loop, conn->fd, 4096, on_read, conn);
  }
  polyphony_loop_submit_accept(loop, listener, on_accept, NULL);
}

int main(int argc, char **argv) {
  max_connections = argc > 1 ? atoi(argv[1]) : 1000000;
  int kind = argc > 2 && strcmp(argv[2], "epoll") == 0 ? POLYPHONY_LOOP_EPOLL : POLYPHONY_LOOP_AUTO;
  loop = polyphony_loop_new(kind);
  if (!loop) {
    fprintf(stderr, "echo_server: no event loop\n");
    return 1;
  }
  listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 128) ||
      getsockname(listener, (struct sockaddr *)&addr, &len)) {
    perror("echo_server");
    return 1;
  }
  printf("%d\n", ntohs(addr.sin_port));
  fflush(stdout);
  polyphony_loop_submit_accept(loop, listener, on_accept, NULL);
  int result = polyphony_loop_run(loop);
  polyphony_loop_free(loop);
  close(listener);
  return result == 0 ? 0 : 1;
}
