/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-framer.h"

#include <stdint.h>
#include <string.h>

/* A string literal as (pointer, length), NUL bytes included. */
#define BYTES(s) (s), (sizeof (s) - 1)
#define UBYTES(s) (const guint8 *) (s), (sizeof (s) - 1)
#define FEED(framer, s) sb_framer_feed ((framer), UBYTES (s))

typedef struct
{
  gboolean complete;
  gsize    len;
  guint8   data[];
} Frame;

typedef struct
{
  const char *data;
  gsize       len;
  gboolean    complete;
} Expect;

#define FULL(s) { BYTES (s), TRUE }
#define PART(s) { BYTES (s), FALSE }

typedef struct
{
  GPtrArray    *frames;
  GMainLoop    *loop;        /* quit at every frame when set */
  gboolean      timed_out;
  gint64        frame_time;  /* when the last frame arrived */
  const guint8 *input;       /* the chunk being fed, to tell copies apart */
  gsize         input_len;
  guint         n_in_place;  /* frames that pointed into @input */
} Recorder;

static void
recorder_init (Recorder *rec)
{
  memset (rec, 0, sizeof *rec);
  rec->frames = g_ptr_array_new_with_free_func (g_free);
}

static void
recorder_clear (Recorder *rec)
{
  g_clear_pointer (&rec->frames, g_ptr_array_unref);
  g_clear_pointer (&rec->loop, g_main_loop_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Recorder, recorder_clear)

static gboolean
points_into (const guint8 *data,
             gsize         len,
             const guint8 *chunk,
             gsize         chunk_len)
{
  uintptr_t p = (uintptr_t) data;
  uintptr_t c = (uintptr_t) chunk;

  return chunk != NULL && p >= c && p + len <= c + chunk_len;
}

static void
record_frame (const guint8 *data,
              gsize         len,
              gboolean      complete,
              gpointer      user_data)
{
  Recorder *rec = user_data;
  Frame *frame = g_malloc (sizeof (Frame) + len);

  g_assert_cmpuint (len, >, 0);
  frame->complete = complete;
  frame->len = len;
  memcpy (frame->data, data, len);
  g_ptr_array_add (rec->frames, frame);

  rec->frame_time = g_get_monotonic_time ();
  if (points_into (data, len, rec->input, rec->input_len))
    rec->n_in_place++;
  if (rec->loop != NULL)
    g_main_loop_quit (rec->loop);
}

/* @expect ends with an entry whose data is NULL. */
static void
assert_frames (GPtrArray    *frames,
               const Expect *expect)
{
  guint n = 0;

  for (; expect[n].data != NULL && n < frames->len; n++) {
    const Frame *frame = g_ptr_array_index (frames, n);

    g_assert_cmpmem (frame->data, frame->len, expect[n].data, expect[n].len);
    g_assert_cmpint (frame->complete, ==, expect[n].complete);
  }
  g_assert_null (expect[n].data);
  g_assert_cmpuint (n, ==, frames->len);
}

static void
assert_same_frames (GPtrArray *frames,
                    GPtrArray *reference)
{
  g_assert_cmpuint (frames->len, ==, reference->len);
  for (guint i = 0; i < frames->len; i++) {
    const Frame *a = g_ptr_array_index (frames, i);
    const Frame *b = g_ptr_array_index (reference, i);

    g_assert_cmpmem (a->data, a->len, b->data, b->len);
    g_assert_cmpint (a->complete, ==, b->complete);
  }
}

/* Splitting */

typedef struct
{
  const char   *path;
  const char   *delimiter;
  gsize         delimiter_len;
  gsize         max_message;
  const char   *input;
  gsize         input_len;
  const Expect *expect;
} Case;

#define D16 "0123456789abcdef"
#define D64 D16 D16 D16 D16

#define EXPECT(...) (const Expect[]) { __VA_ARGS__, { NULL } }

static const Case cases[] = {
  { "/framer/split/delim1", BYTES ("\n"), 1024, BYTES ("hello\nworld\n!"),
    EXPECT (FULL ("hello\n"), FULL ("world\n"), PART ("!")) },
  { "/framer/split/delim2", BYTES ("\r\n"), 1024, BYTES ("hello\r\nwor\rld\r\n"),
    EXPECT (FULL ("hello\r\n"), FULL ("wor\rld\r\n")) },
  { "/framer/split/delim4", BYTES ("\r\n\r\n"), 1024,
    BYTES ("GET / HTTP/1.0\r\n\r\nok\r\n\r\nx\r\n"),
    EXPECT (FULL ("GET / HTTP/1.0\r\n\r\n"), FULL ("ok\r\n\r\n"), PART ("x\r\n")) },
  { "/framer/split/delim64", BYTES (D64), 1024, BYTES ("x" D16 D64 "0123" D64 "y"),
    EXPECT (FULL ("x" D64), FULL (D16 "0123" D64), PART ("y")) },

  { "/framer/overlap/aab", BYTES ("aab"), 1024, BYTES ("aaab"),
    EXPECT (FULL ("aaab")) },
  { "/framer/overlap/abab", BYTES ("abab"), 1024, BYTES ("abaababab"),
    EXPECT (FULL ("abaabab"), PART ("ab")) },
  { "/framer/overlap/abac", BYTES ("abac"), 1024, BYTES ("ababacabac"),
    EXPECT (FULL ("ababac"), FULL ("abac")) },
  { "/framer/overlap/crlfcrlf", BYTES ("\r\n\r\n"), 1024, BYTES ("x\r\n\r\r\n\r\n"),
    EXPECT (FULL ("x\r\n\r\r\n\r\n")) },
  /* A delimiter's bytes belong to its frame and start no other one. */
  { "/framer/overlap/no-reuse", BYTES ("aa"), 1024, BYTES ("aaaaa"),
    EXPECT (FULL ("aa"), FULL ("aa"), PART ("a")) },

  { "/framer/max/exact", BYTES ("\r\n"), 7, BYTES ("hello\r\nworld\r\n"),
    EXPECT (FULL ("hello\r\n"), FULL ("world\r\n")) },
  { "/framer/max/one-over", BYTES ("\n"), 5, BYTES ("hello\nabcd\n"),
    EXPECT (PART ("hello"), FULL ("\n"), FULL ("abcd\n")) },
  { "/framer/max/partial-delimiter", BYTES ("\r\n"), 4, BYTES ("abc\r\n"),
    EXPECT (PART ("abc\r"), FULL ("\n")) },
  { "/framer/max/false-start", BYTES ("\r\n"), 4, BYTES ("ab\r\r\nc"),
    EXPECT (PART ("ab\r\r"), FULL ("\n"), PART ("c")) },
  { "/framer/max/long", BYTES ("\n"), 3, BYTES ("abcdefgh\n"),
    EXPECT (PART ("abc"), PART ("def"), FULL ("gh\n")) },
  { "/framer/max/one", BYTES ("\n"), 1, BYTES ("ab\n\n"),
    EXPECT (PART ("a"), PART ("b"), FULL ("\n"), FULL ("\n")) },
  { "/framer/max/delimiter-only", BYTES ("\r\n\r\n"), 4, BYTES ("\r\n\r\n\r\n"),
    EXPECT (FULL ("\r\n\r\n"), PART ("\r\n")) },

  { "/framer/binary/nul-ff", BYTES ("\0\xff"), 1024, BYTES ("\0a\xff\0\0\xff\xff\0"),
    EXPECT (FULL ("\0a\xff\0\0\xff"), PART ("\xff\0")) },
  { "/framer/binary/nul", BYTES ("\0"), 1024, BYTES ("ab\0\0c\xff\0"),
    EXPECT (FULL ("ab\0"), FULL ("\0"), FULL ("c\xff\0")) },
  { "/framer/binary/ff", BYTES ("\xff"), 1024, BYTES ("\0\xff\xff\0"),
    EXPECT (FULL ("\0\xff"), FULL ("\xff"), PART ("\0")) },
};

/* Feeds the input in three pieces cut at @i and @j, then flushes. */
static void
check_pieces (const Case *c,
              gsize       i,
              gsize       j)
{
  const guint8 *input = (const guint8 *) c->input;
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;

  recorder_init (&rec);
  framer = sb_framer_new ((const guint8 *) c->delimiter, c->delimiter_len,
                          c->max_message, 0, record_frame, &rec);
  sb_framer_feed (framer, input, i);
  sb_framer_feed (framer, input + i, j - i);
  sb_framer_feed (framer, input + j, c->input_len - j);
  sb_framer_flush (framer);

  assert_frames (rec.frames, c->expect);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
}

static void
check_bytewise (const Case *c)
{
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;

  recorder_init (&rec);
  framer = sb_framer_new ((const guint8 *) c->delimiter, c->delimiter_len,
                          c->max_message, 0, record_frame, &rec);
  for (gsize i = 0; i < c->input_len; i++)
    sb_framer_feed (framer, (const guint8 *) c->input + i, 1);
  sb_framer_flush (framer);

  assert_frames (rec.frames, c->expect);
}

/* Every way of cutting the input into two and three feeds gives the same
 * frames as one feed. */
static void
test_case (gconstpointer data)
{
  const Case *c = data;

  for (gsize i = 0; i <= c->input_len; i++) {
    for (gsize j = i; j <= c->input_len; j++)
      check_pieces (c, i, j);
  }
  check_bytewise (c);
}

/* Feeding and flushing */

static void
test_empty (void)
{
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;
  g_autoptr(SbFramer) undelimited = NULL;

  recorder_init (&rec);
  framer = sb_framer_new (UBYTES ("\n"), 1024, 0, record_frame, &rec);
  undelimited = sb_framer_new (NULL, 0, 1024, 0, record_frame, &rec);

  sb_framer_feed (framer, NULL, 0);
  sb_framer_feed (framer, (const guint8 *) "x", 0);
  sb_framer_flush (framer);
  sb_framer_end_datagram (framer);
  sb_framer_feed (undelimited, NULL, 0);
  sb_framer_flush (undelimited);

  g_assert_cmpuint (rec.frames->len, ==, 0);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
  g_assert_cmpuint (sb_framer_get_pending (undelimited), ==, 0);
}

static void
test_undelimited (void)
{
  static const char input[] = "abcd\nefgh\0ij";
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;

  recorder_init (&rec);
  framer = sb_framer_new (NULL, 0, 4, 50, record_frame, &rec);
  rec.input = (const guint8 *) input;
  rec.input_len = sizeof input - 1;

  sb_framer_feed (framer, rec.input, rec.input_len);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
  FEED (framer, "xy");
  sb_framer_flush (framer);

  assert_frames (rec.frames, EXPECT (PART ("abcd"), PART ("\nefg"), PART ("h\0ij"),
                                     PART ("xy")));
  g_assert_cmpuint (rec.n_in_place, ==, 3);
}

static void
test_flush (void)
{
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;

  recorder_init (&rec);
  framer = sb_framer_new (UBYTES ("\r\n"), 1024, 0, record_frame, &rec);

  FEED (framer, "ab\r");
  g_assert_cmpuint (rec.frames->len, ==, 0);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 3);
  sb_framer_flush (framer);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);

  /* The "\r" already delivered still counts towards the delimiter. */
  FEED (framer, "\ncd");
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 2);
  sb_framer_flush (framer);
  sb_framer_flush (framer);

  assert_frames (rec.frames, EXPECT (PART ("ab\r"), FULL ("\n"), PART ("cd")));
}

static void
test_end_datagram (void)
{
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;

  recorder_init (&rec);
  framer = sb_framer_new (UBYTES ("\r\n"), 4, 0, record_frame, &rec);

  FEED (framer, "ab\r");
  sb_framer_end_datagram (framer);
  FEED (framer, "\ncd\r\n");

  /* A cut leaves nothing pending, but the match state still goes. */
  FEED (framer, "xyz\r");
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
  sb_framer_end_datagram (framer);
  FEED (framer, "\n");
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 1);
  sb_framer_end_datagram (framer);

  assert_frames (rec.frames, EXPECT (PART ("ab\r"), PART ("\ncd\r"), FULL ("\n"),
                                     PART ("xyz\r"), PART ("\n")));
}

static void
test_zero_copy (void)
{
  static const char first[] = "a\nb\nc";
  static const char second[] = "d\ne\nf";
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;

  recorder_init (&rec);
  framer = sb_framer_new (UBYTES ("\n"), 1024, 0, record_frame, &rec);

  rec.input = (const guint8 *) first;
  rec.input_len = sizeof first - 1;
  sb_framer_feed (framer, rec.input, rec.input_len);
  g_assert_cmpuint (rec.n_in_place, ==, 2);

  /* "cd\n" spans both chunks, so it must come from the framer's buffer. */
  rec.input = (const guint8 *) second;
  rec.input_len = sizeof second - 1;
  sb_framer_feed (framer, rec.input, rec.input_len);
  g_assert_cmpuint (rec.n_in_place, ==, 3);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 1);

  assert_frames (rec.frames, EXPECT (FULL ("a\n"), FULL ("b\n"), FULL ("cd\n"),
                                     FULL ("e\n")));
}

static void
test_many (void)
{
  const guint n_frames = 10000;
  g_auto(Recorder) rec = { 0 };
  g_autoptr(SbFramer) framer = NULL;
  g_autoptr(GString) input = g_string_new (NULL);

  recorder_init (&rec);
  framer = sb_framer_new (UBYTES ("\r\n"), 64, 0, record_frame, &rec);
  for (guint i = 0; i < n_frames; i++)
    g_string_append_printf (input, "frame %u\r\n", i);

  rec.input = (const guint8 *) input->str;
  rec.input_len = input->len;
  sb_framer_feed (framer, rec.input, rec.input_len);

  g_assert_cmpuint (rec.frames->len, ==, n_frames);
  g_assert_cmpuint (rec.n_in_place, ==, n_frames);
  for (guint i = 0; i < n_frames; i++) {
    const Frame *frame = g_ptr_array_index (rec.frames, i);
    g_autofree char *expected = g_strdup_printf ("frame %u\r\n", i);

    g_assert_cmpmem (frame->data, frame->len, expected, strlen (expected));
    g_assert_true (frame->complete);
  }
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
}

static void
test_invalid (void)
{
  guint8 delimiter[SB_FRAMER_MAX_DELIMITER + 1] = { 0 };
  g_autoptr(SbFramer) longest = NULL;

  longest = sb_framer_new (delimiter, SB_FRAMER_MAX_DELIMITER, 1, 0, record_frame, NULL);
  g_assert_nonnull (longest);

  g_test_expect_message (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL, "*delimiter_len*");
  g_assert_null (sb_framer_new (delimiter, sizeof delimiter, 1024, 0, record_frame, NULL));
  g_test_expect_message (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL, "*max_message*");
  g_assert_null (sb_framer_new (delimiter, 1, 0, 0, record_frame, NULL));
  g_test_expect_message (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL, "*delimiter != NULL*");
  g_assert_null (sb_framer_new (NULL, 1, 1024, 0, record_frame, NULL));
  g_test_assert_expected_messages ();
}

/* A naive splitter to compare against: it looks for the delimiter by
 * comparing the last bytes of the stream after every byte. */

typedef struct
{
  const guint8 *delimiter;
  gsize         delimiter_len;
  gsize         max_message;
  GByteArray   *frame;
  GByteArray   *tail;   /* stream bytes since the last delimiter or datagram */
  Recorder     *rec;
} Reference;

static void
reference_emit (Reference *ref,
                gboolean   complete)
{
  record_frame (ref->frame->data, ref->frame->len, complete, ref->rec);
  g_byte_array_set_size (ref->frame, 0);
}

static void
reference_byte (Reference *ref,
                guint8     byte)
{
  GByteArray *tail = ref->tail;

  g_byte_array_append (ref->frame, &byte, 1);
  g_byte_array_append (tail, &byte, 1);
  if (tail->len > ref->delimiter_len)
    g_byte_array_remove_index (tail, 0);

  if (tail->len == ref->delimiter_len &&
      memcmp (tail->data, ref->delimiter, ref->delimiter_len) == 0) {
    reference_emit (ref, TRUE);
    g_byte_array_set_size (tail, 0);
  } else if (ref->frame->len == ref->max_message) {
    reference_emit (ref, FALSE);
  }
}

static void
reference_flush (Reference *ref)
{
  if (ref->frame->len > 0)
    reference_emit (ref, FALSE);
}

/* Bytes from the delimiter and a few others, with whole delimiters mixed in
 * so that frames, false starts and cuts all happen often. */
static GByteArray *
random_stream (GRand        *rand,
               const guint8 *delimiter,
               gsize         delimiter_len,
               gsize         len)
{
  static const guint8 others[] = { 'x', 0x00, 0xff };
  GByteArray *stream = g_byte_array_sized_new (len + delimiter_len);

  while (stream->len < len) {
    guint pick = g_rand_int_range (rand, 0, delimiter_len + G_N_ELEMENTS (others) + 1);

    if (pick < delimiter_len)
      g_byte_array_append (stream, &delimiter[pick], 1);
    else if (pick < delimiter_len + G_N_ELEMENTS (others))
      g_byte_array_append (stream, &others[pick - delimiter_len], 1);
    else if (g_rand_boolean (rand))
      g_byte_array_append (stream, delimiter, delimiter_len);
  }
  return stream;
}

/* Feeds @stream in random chunks, with random flushes and datagram ends,
 * to both the framer and the reference. */
static void
feed_randomly (GRand      *rand,
               GByteArray *stream,
               SbFramer   *framer,
               Reference  *ref)
{
  for (gsize pos = 0; pos < stream->len;) {
    gsize n = g_rand_int_range (rand, 0, 300);
    guint event = g_rand_int_range (rand, 0, 40);

    n = MIN (n, stream->len - pos);
    sb_framer_feed (framer, stream->data + pos, n);
    for (gsize i = 0; i < n; i++)
      reference_byte (ref, stream->data[pos + i]);
    pos += n;

    if (event == 0) {
      sb_framer_flush (framer);
      reference_flush (ref);
    } else if (event == 1) {
      sb_framer_end_datagram (framer);
      reference_flush (ref);
      g_byte_array_set_size (ref->tail, 0);
    }
    g_assert_cmpuint (sb_framer_get_pending (framer), ==, ref->frame->len);
  }
}

static void
check_random (GRand        *rand,
              const guint8 *delimiter,
              gsize         delimiter_len,
              gsize         max_message)
{
  g_auto(Recorder) rec = { 0 };
  g_auto(Recorder) expected = { 0 };
  g_autoptr(SbFramer) framer = NULL;
  g_autoptr(GByteArray) stream = random_stream (rand, delimiter, delimiter_len, 64 * 1024);
  g_autoptr(GByteArray) frame = g_byte_array_new ();
  g_autoptr(GByteArray) tail = g_byte_array_new ();
  Reference ref = { delimiter, delimiter_len, max_message, frame, tail, &expected };

  recorder_init (&rec);
  recorder_init (&expected);
  framer = sb_framer_new (delimiter, delimiter_len, max_message, 0, record_frame, &rec);

  feed_randomly (rand, stream, framer, &ref);
  sb_framer_flush (framer);
  reference_flush (&ref);

  g_test_message ("delimiter of %" G_GSIZE_FORMAT " bytes, max %" G_GSIZE_FORMAT
                  ": %u frames", delimiter_len, max_message, rec.frames->len);
  assert_same_frames (rec.frames, expected.frames);
}

static void
test_random (void)
{
  static const struct {
    const char *delimiter;
    gsize       len;
  } delimiters[] = {
    { BYTES ("\n") }, { BYTES ("\r\n") }, { BYTES ("aab") }, { BYTES ("abab") },
    { BYTES ("\r\n\r\n") }, { BYTES ("\0\xff") }, { BYTES ("abaabab") },
    { BYTES ("ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab"
             "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab" "ab"
             "ab" "ac") },
  };
  static const gsize maxes[] = { 1, 3, 7, 64, 4096 };
  g_autoptr(GRand) rand = g_rand_new_with_seed (20240229);

  for (gsize d = 0; d < G_N_ELEMENTS (delimiters); d++) {
    for (gsize m = 0; m < G_N_ELEMENTS (maxes); m++)
      check_random (rand, (const guint8 *) delimiters[d].delimiter, delimiters[d].len,
                    maxes[m]);
  }
}

/* The flush timer, on a private main context */

typedef struct
{
  GMainContext *context;
  Recorder      rec;
} TimerFixture;

static void
timer_setup (TimerFixture *fixture,
             gconstpointer data)
{
  fixture->context = g_main_context_new ();
  g_main_context_push_thread_default (fixture->context);
  recorder_init (&fixture->rec);
  fixture->rec.loop = g_main_loop_new (fixture->context, FALSE);
}

static void
timer_teardown (TimerFixture *fixture,
                gconstpointer data)
{
  recorder_clear (&fixture->rec);
  g_main_context_pop_thread_default (fixture->context);
  g_main_context_unref (fixture->context);
}

/* How long the context would sleep now, in ms; -1 when nothing is armed. */
static gint
context_timeout (GMainContext *context)
{
  GPollFD fds[8];
  gint priority;
  gint timeout;

  g_assert_true (g_main_context_acquire (context));
  g_main_context_prepare (context, &priority);
  g_main_context_query (context, G_MAXINT, &timeout, fds, G_N_ELEMENTS (fds));
  g_main_context_release (context);
  return timeout;
}

static gboolean
on_safety_timeout (gpointer user_data)
{
  Recorder *rec = user_data;

  rec->timed_out = TRUE;
  g_main_loop_quit (rec->loop);
  return G_SOURCE_REMOVE;
}

/* Runs the loop until a frame arrives or @ms pass. */
static void
run_loop (Recorder *rec,
          guint     ms)
{
  g_autoptr(GSource) limit = g_timeout_source_new (ms);

  rec->timed_out = FALSE;
  g_source_set_callback (limit, on_safety_timeout, rec, NULL);
  g_source_attach (limit, g_main_loop_get_context (rec->loop));
  g_main_loop_run (rec->loop);
  g_source_destroy (limit);
}

static void
test_timer_fires (TimerFixture *fixture,
                  gconstpointer data)
{
  Recorder *rec = &fixture->rec;
  g_autoptr(SbFramer) framer = sb_framer_new (UBYTES ("\n"), 1024, 50, record_frame, rec);
  gint64 start = g_get_monotonic_time ();
  gint timeout;

  FEED (framer, "abc");
  timeout = context_timeout (fixture->context);
  g_assert_cmpint (timeout, >=, 0);
  g_assert_cmpint (timeout, <=, 50);

  run_loop (rec, 5000);
  g_assert_false (rec->timed_out);
  assert_frames (rec->frames, EXPECT (PART ("abc")));
  g_assert_cmpint (rec->frame_time - start, >=, 50 * G_TIME_SPAN_MILLISECOND);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
  g_assert_cmpint (context_timeout (fixture->context), ==, -1);
}

typedef struct
{
  SbFramer *framer;
  gint64    time;
} LateFeed;

static gboolean
on_late_feed (gpointer user_data)
{
  LateFeed *late = user_data;

  late->time = g_get_monotonic_time ();
  FEED (late->framer, "c");
  return G_SOURCE_REMOVE;
}

static void
test_timer_postpone (TimerFixture *fixture,
                     gconstpointer data)
{
  Recorder *rec = &fixture->rec;
  g_autoptr(SbFramer) framer = sb_framer_new (UBYTES ("\n"), 1024, 50, record_frame, rec);
  g_autoptr(GSource) feeder = g_timeout_source_new (20);
  LateFeed late = { framer, 0 };

  /* Made before the first feed and of higher priority, so it runs before
   * the first deadline can be acted upon even on a slow machine. */
  g_source_set_priority (feeder, G_PRIORITY_HIGH);
  g_source_set_callback (feeder, on_late_feed, &late, NULL);
  g_source_attach (feeder, fixture->context);
  FEED (framer, "ab");

  run_loop (rec, 5000);
  g_assert_false (rec->timed_out);
  g_assert_cmpint (late.time, >, 0);
  assert_frames (rec->frames, EXPECT (PART ("abc")));
  g_assert_cmpint (rec->frame_time - late.time, >=, 50 * G_TIME_SPAN_MILLISECOND);
}

static void
test_timer_idle (TimerFixture *fixture,
                 gconstpointer data)
{
  Recorder *rec = &fixture->rec;
  g_autoptr(SbFramer) framer = sb_framer_new (UBYTES ("\n"), 1024, 50, record_frame, rec);

  FEED (framer, "a\nb\n");
  g_assert_cmpint (context_timeout (fixture->context), ==, -1);

  FEED (framer, "c");
  g_assert_cmpint (context_timeout (fixture->context), >=, 0);
  FEED (framer, "\n");
  g_assert_cmpint (context_timeout (fixture->context), ==, -1);

  FEED (framer, "d");
  sb_framer_flush (framer);
  g_assert_cmpint (context_timeout (fixture->context), ==, -1);

  /* Nothing more comes, however long the loop runs. */
  run_loop (rec, 150);
  g_assert_true (rec->timed_out);
  assert_frames (rec->frames, EXPECT (FULL ("a\n"), FULL ("b\n"), FULL ("c\n"),
                                      PART ("d")));
}

static void
test_timer_disabled (TimerFixture *fixture,
                     gconstpointer data)
{
  Recorder *rec = &fixture->rec;
  g_autoptr(SbFramer) framer = sb_framer_new (UBYTES ("\n"), 1024, 0, record_frame, rec);

  FEED (framer, "abc");
  g_assert_cmpint (context_timeout (fixture->context), ==, -1);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 3);
  g_assert_cmpuint (rec->frames->len, ==, 0);
}

static void
test_timer_free (TimerFixture *fixture,
                 gconstpointer data)
{
  Recorder *rec = &fixture->rec;
  SbFramer *framer = sb_framer_new (UBYTES ("\n"), 1024, 50, record_frame, rec);

  FEED (framer, "abc");
  g_assert_cmpint (context_timeout (fixture->context), >=, 0);
  sb_framer_free (framer);
  g_assert_cmpint (context_timeout (fixture->context), ==, -1);

  run_loop (rec, 100);
  g_assert_true (rec->timed_out);
  g_assert_cmpuint (rec->frames->len, ==, 0);
}

static void
add_timer_test (const char *path,
                void      (*func) (TimerFixture *, gconstpointer))
{
  g_test_add (path, TimerFixture, NULL, timer_setup, func, timer_teardown);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    g_test_add_data_func (cases[i].path, &cases[i], test_case);

  g_test_add_func ("/framer/empty", test_empty);
  g_test_add_func ("/framer/undelimited", test_undelimited);
  g_test_add_func ("/framer/flush", test_flush);
  g_test_add_func ("/framer/end-datagram", test_end_datagram);
  g_test_add_func ("/framer/zero-copy", test_zero_copy);
  g_test_add_func ("/framer/many", test_many);
  g_test_add_func ("/framer/invalid", test_invalid);
  g_test_add_func ("/framer/random", test_random);

  add_timer_test ("/framer/timer/fires", test_timer_fires);
  add_timer_test ("/framer/timer/postpone", test_timer_postpone);
  add_timer_test ("/framer/timer/idle", test_timer_idle);
  add_timer_test ("/framer/timer/disabled", test_timer_disabled);
  add_timer_test ("/framer/timer/free", test_timer_free);

  return g_test_run ();
}
