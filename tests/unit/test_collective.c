/* test_collective.c — the CPU device's shared-memory collective between
 * real processes: sums bitwise the same on every rank, chunking, doubles,
 * the barrier, and failures (abort, a rank killed, a rank hung, a rank that
 * never comes, a stale segment), with nothing left in /dev/shm. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/error.h"
#include "device/collective.h"
#include "testutil.h"

#define MAX_RANKS 4

/* What each rank writes back to the parent (shared anonymous memory). */
typedef struct {
  int rc[MAX_RANKS];        /* the first error a rank saw, or 0 */
  double arrive[MAX_RANKS]; /* monotonic seconds before the barrier */
  double leave[MAX_RANKS];  /* ... and after it */
  uint64_t hash[MAX_RANKS]; /* of the all-reduced buffer */
  int exact[MAX_RANKS];     /* 1 when the buffer is the rank-order sum */
} shared_out;

typedef struct {
  int world;
  char comm[64];
  double timeout;
  size_t chunk;
  size_t n;          /* floats to reduce */
  int victim;        /* the rank that misbehaves; -1 none */
  int victim_action; /* what it does */
  shared_out *out;
} world_case;

enum { ACT_NONE, ACT_ABORT, ACT_SIGKILL, ACT_HANG, ACT_ABSENT };

static int case_counter;

static void case_init(world_case *c, int world) {
  memset(c, 0, sizeof *c);
  c->world = world;
  snprintf(c->comm, sizeof c->comm, "tcoll-%d-%d", (int)getpid(),
           case_counter++);
  c->timeout = 20;
  c->victim = -1;
  c->out = mmap(NULL, sizeof *c->out, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(c->out != MAP_FAILED);
  memset(c->out, 0, sizeof *c->out);
}

static int shm_exists(const char *comm) {
  char name[300], path[320];
  assert_int_equal(nw_coll_shm_name(comm, name, sizeof name), 0);
  snprintf(path, sizeof path, "/dev/shm%s", name);
  return access(path, F_OK) == 0;
}

static void case_fini(world_case *c) {
  assert_false(shm_exists(c->comm)); /* nothing left, success or not */
  munmap(c->out, sizeof *c->out);
}

/* The value rank r contributes at index i: distinct bits per rank, so a
 * sum in another order would differ in the last place somewhere. */
static float value(int r, size_t i) {
  return (float)((r + 1) * 0.1 + (double)(i % 977) * 1.37e-3 +
                 (double)r * 1e-7 * (double)(i % 13));
}

static uint64_t fnv(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

/* One rank's life: open, all-reduce floats and doubles, barrier, close. */
static int rank_main(world_case *c, int rank) {
  nw_coll_options o = {.kind = NW_COLL_SHM,
                       .rank = rank,
                       .size = c->world,
                       .comm = c->comm,
                       .timeout_s = c->timeout,
                       .chunk_bytes = c->chunk};
  int act = rank == c->victim ? c->victim_action : ACT_NONE;
  if (act == ACT_ABSENT)
    return 0;
  nw_coll *coll;
  char err[512];
  int rc = nw_coll_open(&coll, &o, err, sizeof err);
  if (rc < 0) {
    c->out->rc[rank] = rc;
    return 1;
  }
  if (act == ACT_ABORT) {
    nw_test_sleep(0.2);
    nw_coll_abort(coll);
    nw_coll_close(coll);
    return 0;
  }
  if (act == ACT_SIGKILL) {
    nw_test_sleep(0.2);
    raise(SIGKILL);
  }
  if (act == ACT_HANG)
    nw_test_sleep(3600); /* the parent kills it */
  float *buf = malloc(c->n * sizeof *buf);
  for (size_t i = 0; i < c->n; i++)
    buf[i] = value(rank, i);
  if ((rc = nw_coll_allreduce_f32(coll, buf, c->n)) < 0)
    goto out;
  int exact = 1;
  for (size_t i = 0; i < c->n; i++) {
    float s = value(0, i);
    for (int r = 1; r < c->world; r++)
      s += value(r, i);
    if (memcmp(&s, &buf[i], sizeof s) != 0)
      exact = 0;
  }
  c->out->exact[rank] = exact;
  c->out->hash[rank] = fnv(buf, c->n * sizeof *buf);
  double v[3] = {rank, 1, 0.5 * rank * rank};
  if ((rc = nw_coll_allreduce_f64(coll, v, 3)) < 0)
    goto out;
  double W = c->world,
         want[3] = {W * (W - 1) / 2, W, 0.5 * (W - 1) * W * (2 * W - 1) / 6};
  if (v[0] != want[0] || v[1] != want[1] || v[2] != want[2])
    c->out->exact[rank] = 0;
  nw_test_sleep(0.05 * rank); /* arrive one after another */
  c->out->arrive[rank] = nw_test_now();
  rc = nw_coll_barrier(coll);
  c->out->leave[rank] = nw_test_now();
out:
  c->out->rc[rank] = rc;
  free(buf);
  nw_coll_close(coll);
  return rc < 0;
}

/* Forks the ranks and waits for them; a rank still there after `limit`
 * seconds is killed and counted as a failure of the test. Returns the
 * seconds it took. */
static double run_world(world_case *c, double limit) {
  pid_t pids[MAX_RANKS];
  double t0 = nw_test_now();
  for (int r = 0; r < c->world; r++) {
    pids[r] = fork();
    assert_true(pids[r] >= 0);
    if (pids[r] == 0)
      _exit(rank_main(c, r));
  }
  int left = c->world, killed = 0;
  while (left > 0) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p > 0) {
      left--;
      continue;
    }
    if (nw_test_now() - t0 > limit && !killed) {
      for (int r = 0; r < c->world; r++)
        kill(pids[r], SIGKILL);
      killed = 1;
    }
    nw_test_sleep(0.005);
  }
  assert_false(killed);
  return nw_test_now() - t0;
}

static void check_success(world_case *c) {
  for (int r = 0; r < c->world; r++) {
    assert_int_equal(c->out->rc[r], 0);
    assert_int_equal(c->out->exact[r], 1);
    assert_true(c->out->hash[r] == c->out->hash[0]);
  }
  double last_arrival = 0;
  for (int r = 0; r < c->world; r++)
    if (c->out->arrive[r] > last_arrival)
      last_arrival = c->out->arrive[r];
  for (int r = 0; r < c->world; r++)
    assert_true(c->out->leave[r] >= last_arrival);
}

static void sums(int world, size_t n, size_t chunk) {
  world_case c;
  case_init(&c, world);
  c.n = n;
  c.chunk = chunk;
  run_world(&c, 60);
  check_success(&c);
  case_fini(&c);
}

static void test_sum_2(void **state) {
  (void)state;
  sums(2, 1000, 0);
}
static void test_sum_4(void **state) {
  (void)state;
  sums(4, 1000, 0);
}
/* 1001 floats through 512-byte slots: 8 rounds, the last one short */
static void test_chunked_4(void **state) {
  (void)state;
  sums(4, 1001, 512);
}
/* 3M floats (12 MB) through the default 1 MiB slots */
static void test_large_2(void **state) {
  (void)state;
  sums(2, 3u << 20, 0);
}

/* One rank aborts: the others, blocked in a collective with a long
 * deadline, wake with NW_EPEER at once. */
static void test_abort_wakes_peers(void **state) {
  (void)state;
  world_case c;
  case_init(&c, 4);
  c.n = 100;
  c.timeout = 30;
  c.victim = 2;
  c.victim_action = ACT_ABORT;
  double s = run_world(&c, 20);
  assert_true(s < 5);
  for (int r = 0; r < 4; r++)
    if (r != 2)
      assert_int_equal(c.out->rc[r], NW_EPEER);
  case_fini(&c);
}

/* A rank SIGKILLed while the others wait in a collective: seen through its
 * robust alive mutex, long before the deadline. */
static void test_killed_rank(void **state) {
  (void)state;
  world_case c;
  case_init(&c, 2);
  c.n = 100;
  c.timeout = 30;
  c.victim = 1;
  c.victim_action = ACT_SIGKILL;
  double s = run_world(&c, 20);
  assert_true(s < 5);
  assert_int_equal(c.out->rc[0], NW_EPEER);
  case_fini(&c);
}

/* A rank that hangs: the others give up at their deadline with
 * NW_ETIMEDOUT (the first) or NW_EPEER (woken by the first). */
static void test_hung_rank(void **state) {
  (void)state;
  world_case c;
  case_init(&c, 4);
  c.n = 100;
  c.timeout = 1.0;
  c.victim = 3;
  c.victim_action = ACT_HANG;
  pid_t pids[MAX_RANKS];
  double t0 = nw_test_now();
  for (int r = 0; r < 4; r++) {
    pids[r] = fork();
    assert_true(pids[r] >= 0);
    if (pids[r] == 0)
      _exit(rank_main(&c, r));
  }
  for (int r = 0; r < 3; r++) {
    int st;
    assert_int_equal(waitpid(pids[r], &st, 0), pids[r]);
  }
  double s = nw_test_now() - t0;
  kill(pids[3], SIGKILL);
  waitpid(pids[3], NULL, 0);
  assert_true(s >= 0.9 && s < 5);
  int timed_out = 0;
  for (int r = 0; r < 3; r++) {
    assert_true(c.out->rc[r] == NW_ETIMEDOUT || c.out->rc[r] == NW_EPEER);
    timed_out += c.out->rc[r] == NW_ETIMEDOUT;
  }
  assert_true(timed_out >= 1);
  case_fini(&c);
}

/* Rank 1 never starts: rank 0 times out forming the world and removes the
 * segment it made. */
static void test_absent_rank(void **state) {
  (void)state;
  world_case c;
  case_init(&c, 2);
  c.n = 10;
  c.timeout = 0.5;
  c.victim = 1;
  c.victim_action = ACT_ABSENT;
  run_world(&c, 10);
  assert_int_equal(c.out->rc[0], NW_ETIMEDOUT);
  case_fini(&c);
}

/* Junk under the name (a crash of an older world with the same name, or
 * anything else): rank 0 replaces it, and a rank that looks first waits
 * for the real one. */
static void test_stale_segment(void **state) {
  (void)state;
  world_case c;
  case_init(&c, 2);
  c.n = 1000;
  char name[300];
  assert_int_equal(nw_coll_shm_name(c.comm, name, sizeof name), 0);
  int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
  assert_true(fd >= 0);
  char junk[65536];
  memset(junk, 0x5a, sizeof junk);
  assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
  close(fd);
  /* rank 1 first, so that it sees the junk before rank 0 replaces it */
  c.victim = -1;
  pid_t p1 = fork();
  if (p1 == 0)
    _exit(rank_main(&c, 1));
  nw_test_sleep(0.2);
  pid_t p0 = fork();
  if (p0 == 0)
    _exit(rank_main(&c, 0));
  waitpid(p0, NULL, 0);
  waitpid(p1, NULL, 0);
  check_success(&c);
  case_fini(&c);
}

/* A world whose rank 0 died before the others came: its segment is still
 * named; the next start of the same name works. */
static void test_dead_world_segment(void **state) {
  (void)state;
  world_case c;
  case_init(&c, 2);
  c.n = 100;
  pid_t p = fork();
  if (p == 0) {
    nw_coll_options o = {
        .kind = NW_COLL_SHM, .size = 2, .comm = c.comm, .timeout_s = 30};
    nw_coll *coll;
    char err[256];
    /* killed while waiting for rank 1 */
    _exit(nw_coll_open(&coll, &o, err, sizeof err) < 0);
  }
  double t0 = nw_test_now();
  while (!shm_exists(c.comm) && nw_test_now() - t0 < 5)
    nw_test_sleep(0.01);
  assert_true(shm_exists(c.comm));
  kill(p, SIGKILL);
  waitpid(p, NULL, 0);
  assert_true(shm_exists(c.comm)); /* left behind by the crash */
  run_world(&c, 30);
  check_success(&c);
  case_fini(&c);
}

/* A world of one needs no segment and sums to itself. */
static void test_world_of_one(void **state) {
  (void)state;
  nw_coll_options o = {.kind = NW_COLL_SHM, .size = 1, .timeout_s = 1};
  nw_coll *c;
  char err[256];
  assert_int_equal(nw_coll_open(&c, &o, err, sizeof err), 0);
  float x[3] = {1.5f, -2, 3};
  assert_int_equal(nw_coll_allreduce_f32(c, x, 3), 0);
  assert_true(x[0] == 1.5f && x[1] == -2 && x[2] == 3);
  double d = 7;
  assert_int_equal(nw_coll_allreduce_f64(c, &d, 1), 0);
  assert_true(d == 7);
  assert_int_equal(nw_coll_barrier(c), 0);
  nw_coll_close(c);
}

static void test_bad_options(void **state) {
  (void)state;
  nw_coll *c;
  char err[256];
  nw_coll_options o = {.kind = NW_COLL_SHM, .size = 2, .comm = ""};
  assert_int_equal(nw_coll_open(&c, &o, err, sizeof err), NW_ECONFIG);
  assert_non_null(strstr(err, "NIGHTWATCH_COMM"));
  o.comm = "x";
  o.rank = 2;
  assert_int_equal(nw_coll_open(&c, &o, err, sizeof err), NW_ECONFIG);
  char longname[300];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  char name[400];
  assert_int_equal(nw_coll_shm_name(longname, name, sizeof name), NW_ECONFIG);
  assert_int_equal(nw_coll_shm_name("a/b", name, sizeof name), 0);
  assert_string_equal(name, "/nw-coll-a_b");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_world_of_one),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_sum_2),
      cmocka_unit_test(test_sum_4),
      cmocka_unit_test(test_chunked_4),
      cmocka_unit_test(test_large_2),
      cmocka_unit_test(test_abort_wakes_peers),
      cmocka_unit_test(test_killed_rank),
      cmocka_unit_test(test_hung_rank),
      cmocka_unit_test(test_absent_rank),
      cmocka_unit_test(test_stale_segment),
      cmocka_unit_test(test_dead_world_segment),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
