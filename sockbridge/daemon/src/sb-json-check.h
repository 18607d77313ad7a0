/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Strict RFC 8259 syntax check, run before json-glib sees untrusted text:
 * json-glib 1.6 reads more than JSON, misreads some of it without an
 * error, and overflows its stack on deep nesting.
 * Fails with G_IO_ERROR_INVALID_DATA naming the line and column. */
gboolean sb_json_check (const char  *data,
                        gsize        len,
                        GError     **error);

G_END_DECLS
