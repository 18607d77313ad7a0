/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers shared by the benchmark programs. Everything here is
 * static inline: each program is one file plus this header. */

#include <glib.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

#define SB_BENCH_BUS_NAME    "io.github.Sockbridge1"
#define SB_BENCH_OBJECT_PATH "/io/github/Sockbridge1"
#define SB_BENCH_INTERFACE   "io.github.Sockbridge1"

/* Every benchmark client speaks IPv4 loopback, so the daemon reports this
 * address: the ceiling emitter uses the same one, for the same size. */
#define SB_BENCH_ADDRESS     "127.0.0.1"
#define SB_BENCH_IDENTIFIER  "bench"

static inline void G_GNUC_NORETURN
sb_bench_die (const char *what,
              const char *detail)
{
  fprintf (stderr, "%s: %s\n", what, detail);
  exit (2);
}

static inline guint64
sb_bench_parse_uint (const char *text,
                     const char *what)
{
  guint64 value = 0;
  g_autoptr(GError) error = NULL;

  if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT64, &value, &error))
    sb_bench_die (what, error->message);
  return value;
}

/* SIZE bytes of 'x' ending in "\r\n": one frame of the benchmarks. */
static inline guint8 *
sb_bench_make_frame (gsize size)
{
  guint8 *frame;

  if (size < 2)
    sb_bench_die ("frame size", "at least 2 bytes (the \\r\\n delimiter)");
  frame = g_malloc (size);
  memset (frame, 'x', size - 2);
  frame[size - 2] = '\r';
  frame[size - 1] = '\n';
  return frame;
}

/* 10 000 sockets need more than the usual 1024 descriptors. */
static inline void
sb_bench_raise_nofile (void)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) != 0)
    return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit (RLIMIT_NOFILE, &limit) != 0)
    fprintf (stderr, "cannot raise RLIMIT_NOFILE: %s\n", g_strerror (errno));
}

static inline int
sb_bench_compare_gint64 (gconstpointer a,
                         gconstpointer b)
{
  gint64 x = *(const gint64 *) a;
  gint64 y = *(const gint64 *) b;

  return (x > y) - (x < y);
}

static inline gint64
sb_bench_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gint64) ts.tv_sec * G_GINT64_CONSTANT (1000000000) + ts.tv_nsec;
}

static inline double
sb_bench_percentile (const gint64 *sorted,
                     guint         n,
                     double        p)
{
  guint i = (guint) (p * (n - 1) + 0.5);

  return sorted[MIN (i, n - 1)] / 1000.0;
}

/* Sorts @samples (ns) and prints the line bench/run reads. */
static inline void
sb_bench_print_rtt (gint64 *samples,
                    guint   n)
{
  double sum = 0;

  qsort (samples, n, sizeof *samples, sb_bench_compare_gint64);
  for (guint i = 0; i < n; i++)
    sum += samples[i];
  printf ("n=%u min_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n",
          n, samples[0] / 1000.0, sb_bench_percentile (samples, n, 0.50),
          sb_bench_percentile (samples, n, 0.90), sb_bench_percentile (samples, n, 0.99),
          samples[n - 1] / 1000.0, sum / n / 1000.0);
}

/* The subscriber's shared frame counter in @path: the subscriber creates
 * it (@writable, zeroed), the programs it paces read it. */
static inline guint64 *
sb_bench_map_progress (const char *path,
                       gboolean    writable)
{
  int fd = writable ? open (path, O_RDWR | O_CREAT | O_TRUNC, 0600) : open (path, O_RDONLY);
  void *map;

  if (fd < 0 || (writable && ftruncate (fd, sizeof (guint64)) != 0))
    sb_bench_die (path, g_strerror (errno));
  map = mmap (NULL, sizeof (guint64), writable ? PROT_READ | PROT_WRITE : PROT_READ,
              MAP_SHARED, fd, 0);
  close (fd);
  if (map == MAP_FAILED)
    sb_bench_die (path, g_strerror (errno));
  return map;
}

/* Sleeps while the subscriber (its counter in @progress, see sb-bench-sub
 * --progress) is more than @window behind. The step is long on purpose:
 * polling every 20 µs woke this process 50 000 times a second, and on a
 * 2-core machine those wake-ups preempted the daemon and the subscriber and
 * showed up as their CPU time. A window of 128 frames outlasts 500 µs up to
 * 250 000 frames/s. */
static inline void
sb_bench_pace (const guint64 *progress,
               guint64        sent,
               guint64        window)
{
  struct timespec step = { 0, 500 * 1000 };

  if (progress == NULL)
    return;
  while (sent > __atomic_load_n (progress, __ATOMIC_RELAXED) + window)
    nanosleep (&step, NULL);
}
