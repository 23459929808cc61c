/* CHECK(cond): on failure, names the check and counts it; the test's main returns non-zero
 * when `failures` is not zero. */
#ifndef POLYPHONY_TEST_CHECK_H
#define POLYPHONY_TEST_CHECK_H

#include <stdio.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#endif
