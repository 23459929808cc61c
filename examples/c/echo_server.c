/* An echo server in C on Polyphony's event loop (io_uring, or epoll with argument "epoll"):
 * callbacks only, no threads. Prints its port, serves connections concurrently, and exits
 * after `max` connections have closed.
 *
 *   rake capi PREFIX=$HOME/.local
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig LD_LIBRARY_PATH=$HOME/.local/lib
 *   cc examples/c/echo_server.c $(pkg-config --cflags --libs polyphony) -o echo_server
 *   ./echo_server 3      # then, with the port it printed: nc 127.0.0.1 PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <polyphony.h>

static polyphony_loop *loop;
static int listener;
static int max_connections;
static int closed_connections = 0;

struct connection {
  int fd;
};

static void on_read(void *userdata, const polyphony_completion *completion);

static void finish(struct connection *conn) {
  close(conn->fd);
  free(conn);
  if (++closed_connections >= max_connections) polyphony_loop_stop(loop);
}

static void on_written(void *userdata, const polyphony_completion *completion) {
  struct connection *conn = userdata;
  if (completion->result != POLYPHONY_RESULT_OK ||
      polyphony_loop_submit_read(loop, conn->fd, 4096, on_read, conn, NULL) != POLYPHONY_RESULT_OK)
    finish(conn);
}

static void on_read(void *userdata, const polyphony_completion *completion) {
  struct connection *conn = userdata;
  /* An error, or 0 bytes (the client closed): this connection is done. The loop copies the
   * bytes to write: `data` is only valid during this call. */
  if (completion->result != POLYPHONY_RESULT_OK || completion->value == 0 ||
      polyphony_loop_submit_write(loop, conn->fd, completion->data, completion->value, on_written, conn, NULL) !=
          POLYPHONY_RESULT_OK)
    finish(conn);
}

static void on_accept(void *userdata, const polyphony_completion *completion) {
  (void)userdata;
  if (completion->result == POLYPHONY_RESULT_OK) {
    struct connection *conn = malloc(sizeof *conn);
    conn->fd = (int)completion->value;
    if (polyphony_loop_submit_read(loop, conn->fd, 4096, on_read, conn, NULL) != POLYPHONY_RESULT_OK) finish(conn);
  }
  if (polyphony_loop_submit_accept(loop, listener, on_accept, NULL, NULL) != POLYPHONY_RESULT_OK) {
    fprintf(stderr, "echo_server: %s\n", polyphony_last_error());
    polyphony_loop_stop(loop);
  }
}

int main(int argc, char **argv) {
  max_connections = argc > 1 ? atoi(argv[1]) : 1000000;
  int kind = argc > 2 && strcmp(argv[2], "epoll") == 0 ? POLYPHONY_LOOP_EPOLL : POLYPHONY_LOOP_AUTO;
  if (polyphony_loop_new(kind, &loop) != POLYPHONY_RESULT_OK) {
    fprintf(stderr, "echo_server: %s\n", polyphony_last_error());
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
  polyphony_result result = polyphony_loop_submit_accept(loop, listener, on_accept, NULL, NULL);
  if (result == POLYPHONY_RESULT_OK) result = polyphony_loop_run(loop);
  if (result != POLYPHONY_RESULT_OK) fprintf(stderr, "echo_server: %s\n", polyphony_last_error());
  polyphony_loop_free(loop);
  close(listener);
  return result == POLYPHONY_RESULT_OK ? 0 : 1;
}
