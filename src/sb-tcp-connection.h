/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "sb-server.h"

G_BEGIN_DECLS

/* Bytes ServerSend may queue for one connection before LimitExceeded. */
#define SB_SEND_QUEUE_MAX (4 * 1024 * 1024)

#define SB_TYPE_TCP_CONNECTION (sb_tcp_connection_get_type ())
G_DECLARE_FINAL_TYPE (SbTcpConnection, sb_tcp_connection, SB, TCP_CONNECTION, SbClient)

SbTcpConnection *sb_tcp_connection_new   (SbServer           *server,
                                          GSocketConnection  *connection,
                                          GError            **error);
void             sb_tcp_connection_start (SbTcpConnection    *self);

/* A connection whose TLS handshake succeeded: framing, queues, limits and
 * backpressure are those of TCP, the bytes go through @tls. */
SbTcpConnection *sb_tcp_connection_new_tls (SbServer           *server,
                                            GSocketConnection  *connection,
                                            GTlsConnection     *tls,
                                            GError            **error);
/* NULL for plain TCP. */
GTlsConnection  *sb_tcp_connection_get_tls (SbTcpConnection    *self);

G_END_DECLS
