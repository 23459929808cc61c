/* The load generator of bench/echo.rb: N concurrent connections on Polyphony's C event loop,
 * each sending a 64-byte message and waiting for its echo, for a given time. Prints the
 * number of round trips. Usage: echo_client PORT CONNECTIONS SECONDS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "polyphony.h"

static polyphony_loop *loop;
static long round_trips = 0;
static double deadline;
static int open_connections = 0;
static const char message[64] = "0123456789012345678901234567890123456789012345678901234567890123";

struct connection {
  int fd;
  size_t received;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_read(void *userdata, const polyphony_completion *completion);

static void must(polyphony_result result) {
  if (result != POLYPHONY_RESULT_OK) {
    fprintf(stderr, "echo_client: %s\n", polyphony_last_error());
    exit(1);
  }
}

static void on_written(void *userdata, const polyphony_completion *completion) {
  (void)userdata;
  if (completion->result != POLYPHONY_RESULT_OK || completion->value != 64) {
    fprintf(stderr, "echo_client: short write (%llu, errno %d)\n", (unsigned long long)completion->value,
            completion->error);
    exit(1);
  }
}

static void send_message(struct connection *conn) {
  if (now() >= deadline) {
    close(conn->fd);
    free(conn);
    if (--open_connections == 0) polyphony_loop_stop(loop);
    return;
  }
  conn->received = 0;
  must(polyphony_loop_submit_write(loop, conn->fd, message, sizeof message, on_written, NULL, NULL));
  must(polyphony_loop_submit_read(loop, conn->fd, sizeof message, on_read, conn, NULL));
}

static void on_read(void *userdata, const polyphony_completion *completion) {
  struct connection *conn = userdata;
  if (completion->result != POLYPHONY_RESULT_OK || completion->value == 0) {
    fprintf(stderr, "echo_client: connection lost (errno %d)\n", completion->error);
    exit(1);
  }
  conn->received += completion->value;
  if (conn->received < sizeof message) {
    must(polyphony_loop_submit_read(loop, conn->fd, sizeof message - conn->received, on_read, conn, NULL));
    return;
  }
  round_trips++;
  send_message(conn);
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  int port = atoi(argv[1]), connections = atoi(argv[2]);
  must(polyphony_loop_new(POLYPHONY_LOOP_AUTO, &loop));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  deadline = now() + atof(argv[3]);
  for (int i = 0; i < connections; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
      perror("echo_client");
      return 1;
    }
    struct connection *conn = calloc(1, sizeof *conn);
    conn->fd = fd;
    open_connections++;
    send_message(conn);
  }
  must(polyphony_loop_run(loop));
  printf("%ld\n", round_trips);
  return 0;
}
