/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* An attached source that calls @func once the monotonic clock reaches
 * @ready_time (µs); re-arm it with g_source_set_ready_time(). Unlike a
 * timeout source it can be moved without being re-created. */
GSource *sb_deadline_source_new (gint64        ready_time,
                                 GSourceFunc   func,
                                 gpointer      user_data,
                                 GMainContext *context);

/* Destroys and releases *@source, if any, and sets it to NULL. */
void     sb_clear_source        (GSource     **source);

G_END_DECLS
