/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

#include "sb-config.h"

G_BEGIN_DECLS

/* Larger state files are refused unread (and moved aside). */
#define SB_STATE_MAX_BYTES (4 * 1024 * 1024)

/* The state file: the servers to re-create at start-up, as JSON. */

/* Parses the JSON text of a state file into SbServerConfig elements
 * (the array frees them). Fails with G_IO_ERROR_INVALID_DATA on anything
 * malformed: bad JSON, wrong types, out-of-range values. */
GPtrArray *sb_state_parse     (const char  *data,
                               gsize        len,
                               GError     **error);

/* Serializes @configs (SbServerConfig elements) to JSON text. */
char      *sb_state_serialize (GPtrArray   *configs,
                               gsize       *len);

/* Reads @path. A missing file gives an empty array. A file that cannot be
 * read or parsed is renamed aside (to "<path>.corrupt") with one warning,
 * and an empty array is returned. Never fails. */
GPtrArray *sb_state_load      (const char  *path);

/* Writes @configs to @path atomically (write to a temporary file, fsync,
 * rename), mode exactly 0600 whatever the umask and the old file's mode,
 * creating the parent directory (0700) if needed. */
gboolean   sb_state_save      (const char  *path,
                               GPtrArray   *configs,
                               GError     **error);

G_END_DECLS
