/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-framer.h"

#include "sb-source.h"

#include <string.h>

/* A buffer this large is handed back to the allocator once its frame is
 * delivered: one big message should not pin max-message bytes for the life
 * of a connection, while small buffers are worth reusing. */
#define SB_FRAMER_KEEP_BUFFER (64 * 1024)

struct _SbFramer
{
  guint8        delimiter[SB_FRAMER_MAX_DELIMITER];
  gsize         delimiter_len;
  /* KMP failure table: failure[i] is the length of the longest proper
   * prefix of delimiter[0..i] that is also a suffix of it. */
  guint8        failure[SB_FRAMER_MAX_DELIMITER];
  /* How many delimiter bytes the stream currently ends with. */
  gsize         matched;

  gsize         max_message;
  SbFrameFunc   func;
  gpointer      user_data;

  /* The start of the pending frame; never longer than max_message. */
  guint8       *buf;
  gsize         buf_len;
  gsize         buf_size;

  gint64        flush_timeout_us;
  gint64        deadline;
  GMainContext *context;
  GSource      *timer;
};

G_STATIC_ASSERT (SB_FRAMER_MAX_DELIMITER <= G_MAXUINT8);

static void
build_failure_table (SbFramer *self)
{
  gsize k = 0;

  self->failure[0] = 0;
  for (gsize i = 1; i < self->delimiter_len; i++) {
    while (k > 0 && self->delimiter[i] != self->delimiter[k])
      k = self->failure[k - 1];
    if (self->delimiter[i] == self->delimiter[k])
      k++;
    self->failure[i] = (guint8) k;
  }
}

/**
 * sb_framer_new:
 * @delimiter: (array length=delimiter_len) (nullable): the frame delimiter,
 *   copied
 * @delimiter_len: 0 (deliver data as it arrives) to SB_FRAMER_MAX_DELIMITER
 * @max_message: the longest frame delivered, at least 1
 * @flush_timeout_ms: deliver a partial frame after this long without new
 *   bytes; 0 never does
 * @func: receives the frames
 * @user_data: for @func
 *
 * The flush timer runs in the thread-default main context of the caller.
 *
 * @func may not free the framer nor call back into it: sb_framer_feed() and
 * the flush functions are still walking their input and buffer when it runs.
 *
 * Returns: (transfer full): a new framer
 */
SbFramer *
sb_framer_new (const guint8 *delimiter,
               gsize         delimiter_len,
               gsize         max_message,
               guint         flush_timeout_ms,
               SbFrameFunc   func,
               gpointer      user_data)
{
  SbFramer *self;

  g_return_val_if_fail (delimiter_len <= SB_FRAMER_MAX_DELIMITER, NULL);
  g_return_val_if_fail (delimiter != NULL || delimiter_len == 0, NULL);
  g_return_val_if_fail (max_message >= 1, NULL);
  g_return_val_if_fail (func != NULL, NULL);

  self = g_new0 (SbFramer, 1);
  if (delimiter_len > 0) {
    memcpy (self->delimiter, delimiter, delimiter_len);
    self->delimiter_len = delimiter_len;
    build_failure_table (self);
  }
  self->max_message = max_message;
  self->func = func;
  self->user_data = user_data;
  self->flush_timeout_us = (gint64) flush_timeout_ms * G_TIME_SPAN_MILLISECOND;
  self->context = g_main_context_ref_thread_default ();

  return self;
}

/* Pending bytes are dropped: call sb_framer_flush() first to keep them. */
void
sb_framer_free (SbFramer *self)
{
  if (self == NULL)
    return;

  sb_clear_source (&self->timer);
  g_main_context_unref (self->context);
  g_free (self->buf);
  g_free (self);
}

static void
buffer_append (SbFramer     *self,
               const guint8 *data,
               gsize         len)
{
  gsize need = self->buf_len + len;

  g_assert (need <= self->max_message);

  if (need > self->buf_size) {
    gsize size = MAX (need, MAX (self->buf_size * 2, 256));

    self->buf_size = MIN (size, self->max_message);
    self->buf = g_realloc (self->buf, self->buf_size);
  }
  memcpy (self->buf + self->buf_len, data, len);
  self->buf_len = need;
}

static void
deliver_buffer (SbFramer *self,
                gboolean  complete)
{
  gsize len = self->buf_len;

  self->buf_len = 0;
  self->func (self->buf, len, complete, self->user_data);

  if (self->buf_size > SB_FRAMER_KEEP_BUFFER) {
    g_clear_pointer (&self->buf, g_free);
    self->buf_size = 0;
  }
}

/* Delivers the buffered bytes followed by @len bytes of input as one frame;
 * with nothing buffered, the input goes out without a copy. */
static void
deliver (SbFramer     *self,
         const guint8 *data,
         gsize         len,
         gboolean      complete)
{
  if (self->buf_len == 0) {
    self->func (data, len, complete, self->user_data);
    return;
  }

  buffer_append (self, data, len);
  deliver_buffer (self, complete);
}

/* Advances the KMP state by one byte; TRUE when that byte completes the
 * delimiter. A delimiter ends its frame, so the next one cannot reuse any
 * of its bytes and the state starts over. */
static gboolean
match_byte (SbFramer *self,
            guint8    byte)
{
  gsize m = self->matched;

  while (m > 0 && self->delimiter[m] != byte)
    m = self->failure[m - 1];
  if (self->delimiter[m] == byte)
    m++;

  if (m == self->delimiter_len) {
    self->matched = 0;
    return TRUE;
  }
  self->matched = m;
  return FALSE;
}

/* Scans at most @len bytes and stops right after a delimiter. Returns the
 * number of bytes consumed; each is looked at once. */
static gsize
scan (SbFramer     *self,
      const guint8 *data,
      gsize         len,
      gboolean     *complete)
{
  gsize i = 0;

  *complete = FALSE;
  while (i < len) {
    if (self->matched == 0) {
      const guint8 *hit = memchr (data + i, self->delimiter[0], len - i);

      if (hit == NULL)
        return len;
      i = (gsize) (hit - data);
    }
    if (match_byte (self, data[i++])) {
      *complete = TRUE;
      return i;
    }
  }
  return len;
}

static void
feed_delimited (SbFramer     *self,
                const guint8 *data,
                gsize         len)
{
  gsize start = 0;  /* first input byte of the pending frame */
  gsize pos = 0;

  while (pos < len) {
    /* Never 0: a frame that reaches max_message is delivered at once. */
    gsize room = self->max_message - self->buf_len - (pos - start);
    gboolean complete;
    gsize n = scan (self, data + pos, MIN (len - pos, room), &complete);

    pos += n;
    if (complete || n == room) {
      deliver (self, data + start, pos - start, complete);
      start = pos;
    }
  }

  if (start < len)
    buffer_append (self, data + start, len - start);
}

static void
feed_undelimited (SbFramer     *self,
                  const guint8 *data,
                  gsize         len)
{
  while (len > 0) {
    gsize n = MIN (len, self->max_message);

    self->func (data, n, FALSE, self->user_data);
    data += n;
    len -= n;
  }
}

/* Feeds only move self->deadline; the source is re-armed here when it fires
 * early. Setting the ready time wakes the main context up, which is not
 * worth paying on every read of a busy connection. */
static gboolean
on_timer (gpointer user_data)
{
  SbFramer *self = user_data;

  if (self->deadline > g_get_monotonic_time ()) {
    g_source_set_ready_time (self->timer, self->deadline);
    return G_SOURCE_CONTINUE;
  }

  sb_framer_flush (self);
  return G_SOURCE_CONTINUE;
}

/* Destroyed rather than parked with no ready time: GLib's main loop walks
 * every attached source on every iteration, so thousands of idle
 * connections must not each keep one. In a busy stream bytes stay
 * pending from read to read, so this rarely churns. */
static void
timer_disarm (SbFramer *self)
{
  sb_clear_source (&self->timer);
}

static void
timer_arm (SbFramer *self)
{
  self->deadline = g_get_monotonic_time () + self->flush_timeout_us;

  if (self->timer != NULL)
    return;
  self->timer = sb_deadline_source_new (self->deadline, on_timer, self, self->context);
}

/* func may be called several times, in byte order, before this returns. */
void
sb_framer_feed (SbFramer     *self,
                const guint8 *data,
                gsize         len)
{
  g_return_if_fail (self != NULL);
  g_return_if_fail (data != NULL || len == 0);

  if (len == 0)
    return;

  if (self->delimiter_len == 0) {
    feed_undelimited (self, data, len);
    return;
  }

  feed_delimited (self, data, len);

  if (self->buf_len == 0)
    timer_disarm (self);
  else if (self->flush_timeout_us > 0)
    timer_arm (self);
}

/* Delivers the pending bytes as a partial frame. The delimiter match state
 * is kept: a delimiter that straddles the flush still ends the next frame. */
void
sb_framer_flush (SbFramer *self)
{
  g_return_if_fail (self != NULL);

  timer_disarm (self);
  if (self->buf_len > 0)
    deliver_buffer (self, FALSE);
}

/* A datagram is a frame boundary: no delimiter spans two of them. */
void
sb_framer_end_datagram (SbFramer *self)
{
  g_return_if_fail (self != NULL);

  sb_framer_flush (self);
  self->matched = 0;
}

gsize
sb_framer_get_pending (SbFramer *self)
{
  g_return_val_if_fail (self != NULL, 0);

  return self->buf_len;
}
