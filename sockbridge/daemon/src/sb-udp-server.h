/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "sb-server.h"

G_BEGIN_DECLS

/* The largest payload of one IPv4 UDP datagram. */
#define SB_UDP_MAX_DATAGRAM 65507

#define SB_TYPE_UDP_SERVER (sb_udp_server_get_type ())
G_DECLARE_FINAL_TYPE (SbUdpServer, sb_udp_server, SB, UDP_SERVER, SbServer)

/* ServerSendTo(): one datagram from the server's own socket to @to. Fails
 * with SB_ERROR_LIMIT_EXCEEDED over SB_UDP_MAX_DATAGRAM bytes or a full
 * queue, and with SB_ERROR_FAILED and the system's reason when the kernel
 * refuses it at once. */
gboolean sb_udp_server_send_to (SbUdpServer     *self,
                                GSocketAddress  *to,
                                GBytes          *data,
                                GError         **error);

G_END_DECLS
