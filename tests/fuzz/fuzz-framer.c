/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the framer against its invariants, whatever the
 * delimiter, the cut size and the split of the stream into reads. */
#include <string.h>

#include "sb-framer.h"

typedef struct
{
  GByteArray   *joined;
  const guint8 *delimiter;
  gsize         delimiter_len;
  gsize         max_message;
} Check;

static void
on_frame (const guint8 *data,
          gsize         len,
          gboolean      complete,
          gpointer      user_data)
{
  Check *check = user_data;

  g_assert_cmpuint (len, >, 0);
  g_assert_cmpuint (len, <=, check->max_message);
  if (complete) {
    g_assert_cmpuint (check->delimiter_len, >, 0);
    /* The delimiter may have begun in the previous (cut) frame. */
    if (len >= check->delimiter_len)
      g_assert_cmpmem (data + len - check->delimiter_len, check->delimiter_len,
                       check->delimiter, check->delimiter_len);
  }
  g_byte_array_append (check->joined, data, len);
}

/* Input: [delimiter length % 5][delimiter][max_message % 64 + 1][chunk
 * sizes...][0xff][stream]: everything the framer takes is fuzzed. */
int LLVMFuzzerTestOneInput (const guint8 *data, gsize size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        gsize         size)
{
  Check check = { NULL, };
  g_autoptr(SbFramer) framer = NULL;
  const guint8 *end = data + size, *sizes, *stream;
  gsize n_sizes, i = 0;

  if (size < 2)
    return 0;
  check.delimiter_len = data[0] % 5;
  if (size < 2 + check.delimiter_len)
    return 0;
  check.delimiter = data + 1;
  check.max_message = data[1 + check.delimiter_len] % 64 + 1;
  sizes = data + 2 + check.delimiter_len;
  stream = memchr (sizes, 0xff, end - sizes);
  stream = stream ? stream + 1 : end;
  n_sizes = stream > sizes ? stream - sizes - 1 : 0;

  check.joined = g_byte_array_new ();
  framer = sb_framer_new (check.delimiter, check.delimiter_len, check.max_message, 0,
                          on_frame, &check);
  /* A size byte gives a read of (byte % 64 + 1) bytes; its high bit
   * flushes after the read, as the flush timer would. */
  for (const guint8 *p = stream; p < end;) {
    guint8 code = n_sizes ? sizes[i++ % n_sizes] : 6;
    gsize chunk = MIN ((gsize) (code % 64 + 1), (gsize) (end - p));

    sb_framer_feed (framer, p, chunk);
    if (code & 0x80)
      sb_framer_flush (framer);
    p += chunk;
  }
  sb_framer_flush (framer);
  g_assert_cmpuint (sb_framer_get_pending (framer), ==, 0);
  g_assert_cmpmem (check.joined->data, check.joined->len, stream, (gsize) (end - stream));
  g_byte_array_unref (check.joined);
  return 0;
}
