/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Who is calling: the Unix user behind each unique bus name, asked of the
 * bus once per name and forgotten when the name goes away. */
#define SB_TYPE_CALLERS (sb_callers_get_type ())
G_DECLARE_FINAL_TYPE (SbCallers, sb_callers, SB, CALLERS, GObject)

/* @error is set when the bus could not tell the caller's user. */
typedef void (*SbCallerFunc) (guint32       uid,
                              const GError *error,
                              gpointer      user_data);

SbCallers *sb_callers_new (GDBusConnection *connection);

/* Runs @func with the Unix user of @sender: at once when known, otherwise
 * once the bus answered. Calls for one sender run in the order they were
 * made, so a caller's method calls are handled in the order they arrive. */
void       sb_callers_run (SbCallers       *self,
                           const char      *sender,
                           SbCallerFunc     func,
                           gpointer         user_data);

G_END_DECLS
