/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "sb-dbus-generated.h"

G_BEGIN_DECLS

#define SB_BUS_NAME    "io.github.Sockbridge1"
#define SB_OBJECT_PATH "/io/github/Sockbridge1"
#define SB_INTERFACE   "io.github.Sockbridge1"

/* Servers the daemon runs at most: each holds one or two descriptors. */
#define SB_MAX_SERVERS 1024

/* The bus object: owns every server and answers the interface's methods. */
#define SB_TYPE_DAEMON (sb_daemon_get_type ())
G_DECLARE_FINAL_TYPE (SbDaemon, sb_daemon, SB, DAEMON, SbSockbridge1Skeleton)

/* @state_path: where servers are remembered across restarts; NULL for
 * none. */
SbDaemon *sb_daemon_new      (GDBusConnection  *connection,
                              const char       *state_path);
gboolean  sb_daemon_export   (SbDaemon         *self,
                              GError          **error);
/* Re-creates the servers of the state file; call once the name is owned. */
void      sb_daemon_restore  (SbDaemon         *self);
/* Stops every server, with its signals, leaving the state file as it is. */
void      sb_daemon_shutdown (SbDaemon         *self);

G_END_DECLS
