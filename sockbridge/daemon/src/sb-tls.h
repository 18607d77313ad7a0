/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "sb-server.h"

G_BEGIN_DECLS

/* The TLS side of a TCP server whose config has TLS settings: its
 * credentials, loaded once when the server starts, and the handshakes of
 * the connections that are not clients yet. Everything TLS is GIO's
 * (GTlsServerConnection, glib-networking's GnuTLS backend). */
typedef struct _SbTls SbTls;

/* Reads the files the server's config names and loads the certificate,
 * its key and chain, and the client CA. Fails with a message that names
 * the setting and the file, never what the file holds:
 * SB_ERROR_PERMISSION_DENIED for a file the daemon may not read,
 * SB_ERROR_INVALID_ARGUMENT for a missing or unusable one,
 * SB_ERROR_FAILED when GIO has no TLS backend. */
SbTls   *sb_tls_new            (SbServer          *server,
                                GError           **error);
/* Ends every handshake in progress: those connections close without a
 * signal, as if they had never come. */
void     sb_tls_free           (SbTls             *self);

/* Takes a connection accepted by the server (which checked
 * sb_server_is_full()) through its handshake. It holds a place of the
 * server meanwhile, and becomes a client, with its ONLINE, only once the
 * handshake succeeded. A failed or timed-out handshake closes it without
 * a signal; it is counted and logged (at powers of two). */
void     sb_tls_accept         (SbTls             *self,
                                GSocketConnection *connection);

/* GetStatistics' TLS counters. */
void     sb_tls_add_statistics (GVariantBuilder   *builder);

/* GetConnectionInfo's TLS entries: protocol version, cipher suite and the
 * client certificate's subject and issuer, if it sent one. */
void     sb_tls_describe       (GTlsConnection    *connection,
                                GVariantBuilder   *builder);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbTls, sb_tls_free)

G_END_DECLS
