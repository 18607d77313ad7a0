/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Daemon-wide counters, read by GetStatistics(). The daemon is
 * single-threaded, so plain integers do. */
typedef struct
{
  guint64 connections_accepted;
  guint64 connections_refused;     /* closed at once: a connection limit */
  guint64 udp_peers_evicted;       /* dropped to make room for a new one */
  guint64 udp_datagrams_dropped;   /* received while the bus was congested */
  guint64 connections_denied;      /* closed at once: not in allow-from */
  guint64 udp_datagrams_denied;    /* dropped: the sender not in allow-from */
  guint64 frames_in;
  guint64 bytes_in;
  guint64 bytes_out;
} SbStatistics;

extern SbStatistics sb_statistics;

/* Counts one more event in @counter and logs it when the count is a power
 * of two: a flood cannot flood the journal, yet the first event and the
 * growth are visible. */
void sb_statistics_count (guint64    *counter,
                          const char *format,
                          ...) G_GNUC_PRINTF (2, 3);

G_END_DECLS
