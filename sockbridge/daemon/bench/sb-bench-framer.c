/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The framer alone, against a memmem() splitter, on the same stream.
 *
 *   sb-bench-framer MIB
 *
 * Feeds MIB MiB of 32-byte frames ending in "\r\n", in 64 KiB chunks, to
 * sb_framer_feed() (with the daemon's default settings) and to a plain
 * memmem() splitter that delivers the same frames to the same kind of
 * callback. Each runs three times; the best run counts. Prints
 * "framer_bps=… memmem_bps=… frames=…". */
#define G_LOG_DOMAIN "sb-bench"

#include "sb-framer.h"

#include "sb-bench-util.h"

#define FRAME_SIZE   32
#define CHUNK_SIZE   (64 * 1024)
#define MAX_MESSAGE  (1024 * 1024)
#define FLUSH_MS     1000
#define ROUNDS       3

typedef struct
{
  guint64 frames;
  guint64 bytes;
  guint8  check;   /* keeps the compiler from skipping the frames */
} Tally;

static void
on_frame (const guint8 *data,
          gsize         len,
          gboolean      complete,
          gpointer      user_data)
{
  Tally *tally = user_data;

  tally->frames++;
  tally->bytes += len;
  tally->check ^= data[len - 1];
}

/* The obvious splitter: memmem() for the delimiter, a carry buffer for a
 * frame that spans chunks. A delimiter that spans chunks is found by
 * looking at the carried bytes' tail. */
typedef struct
{
  guint8 carry[MAX_MESSAGE];
  gsize  carry_len;
} Splitter;

static void
carry_append (Splitter     *s,
              const guint8 *data,
              gsize         len)
{
  len = MIN (len, sizeof s->carry - s->carry_len);
  memcpy (s->carry + s->carry_len, data, len);
  s->carry_len += len;
}

static void
splitter_feed (Splitter     *s,
               const guint8 *data,
               gsize         len,
               Tally        *tally)
{
  const guint8 *p = data, *end = data + len;

  if (s->carry_len > 0 && s->carry[s->carry_len - 1] == '\r' && len > 0 && data[0] == '\n') {
    carry_append (s, data, 1);
    on_frame (s->carry, s->carry_len, TRUE, tally);
    s->carry_len = 0;
    p++;
  }
  while (p < end) {
    const guint8 *hit = memmem (p, end - p, "\r\n", 2);

    if (hit == NULL)
      break;
    hit += 2;
    if (s->carry_len > 0) {
      carry_append (s, p, hit - p);
      on_frame (s->carry, s->carry_len, TRUE, tally);
      s->carry_len = 0;
    } else {
      on_frame (p, hit - p, TRUE, tally);
    }
    p = hit;
  }
  carry_append (s, p, end - p);
}

static guint8 *
make_chunk (void)
{
  g_autofree guint8 *frame = sb_bench_make_frame (FRAME_SIZE);
  guint8 *chunk = g_malloc (CHUNK_SIZE);

  for (gsize i = 0; i < CHUNK_SIZE; i += FRAME_SIZE)
    memcpy (chunk + i, frame, FRAME_SIZE);
  return chunk;
}

static double
run_framer (const guint8 *chunk,
            guint64       chunks,
            Tally        *tally)
{
  const guint8 delimiter[] = "\r\n";
  g_autoptr(SbFramer) framer = sb_framer_new (delimiter, 2, MAX_MESSAGE, FLUSH_MS,
                                              on_frame, tally);
  gint64 start = g_get_monotonic_time ();

  for (guint64 i = 0; i < chunks; i++)
    sb_framer_feed (framer, chunk, CHUNK_SIZE);
  return (g_get_monotonic_time () - start) / 1e6;
}

static double
run_memmem (const guint8 *chunk,
            guint64       chunks,
            Tally        *tally)
{
  g_autofree Splitter *splitter = g_new0 (Splitter, 1);
  gint64 start = g_get_monotonic_time ();

  for (guint64 i = 0; i < chunks; i++)
    splitter_feed (splitter, chunk, CHUNK_SIZE, tally);
  return (g_get_monotonic_time () - start) / 1e6;
}

int
main (int   argc,
      char *argv[])
{
  g_autofree guint8 *chunk = make_chunk ();
  double best_framer = G_MAXDOUBLE, best_memmem = G_MAXDOUBLE;
  guint64 chunks, total;
  Tally framer_tally = { 0 }, memmem_tally = { 0 };

  if (argc != 2)
    sb_bench_die ("usage", "sb-bench-framer MIB");
  chunks = sb_bench_parse_uint (argv[1], "MIB") * 1024 * 1024 / CHUNK_SIZE;
  total = chunks * CHUNK_SIZE;

  for (guint round = 0; round < ROUNDS; round++) {
    double memmem_s = run_memmem (chunk, chunks, &memmem_tally);
    double framer_s = run_framer (chunk, chunks, &framer_tally);

    best_memmem = MIN (best_memmem, memmem_s);
    best_framer = MIN (best_framer, framer_s);
  }
  if (framer_tally.frames != memmem_tally.frames || framer_tally.bytes != ROUNDS * total)
    sb_bench_die ("framer", "the framer and the memmem splitter disagree on the frames");

  printf ("framer_bps=%.0f memmem_bps=%.0f frames=%" G_GUINT64_FORMAT " check=%u\n",
          total / best_framer, total / best_memmem, framer_tally.frames / ROUNDS,
          (guint) (framer_tally.check ^ memmem_tally.check));
  return 0;
}
