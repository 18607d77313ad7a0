/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Readiness of many descriptors through one epoll instance, dispatched from
 * a single GSource of the main context. GLib's main loop polls every source
 * on every iteration; with thousands of idle connections that cost would
 * fall on every frame. Here a wake-up costs only what is ready. */
typedef struct _SbWatch SbWatch;

/* Return value ignored; the watch may be freed from inside the call. */
typedef void (*SbWatchFunc) (SbWatch      *watch,
                             GIOCondition  condition,
                             gpointer      user_data);

/* Level-triggered: @func runs on every iteration while @events (G_IO_IN,
 * G_IO_OUT) hold; G_IO_HUP and G_IO_ERR are always reported. */
SbWatch *sb_watch_new        (int           fd,
                              GIOCondition  events,
                              SbWatchFunc   func,
                              gpointer      user_data);
void     sb_watch_set_events (SbWatch      *watch,
                              GIOCondition  events);
void     sb_watch_free       (SbWatch      *watch);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbWatch, sb_watch_free)

G_END_DECLS
