/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "sb-server.h"

G_BEGIN_DECLS

/* The largest payload of one IPv4 UDP datagram. */
#define SB_UDP_MAX_DATAGRAM 65507

#define SB_TYPE_UDP_SERVER (sb_udp_server_get_type ())
G_DECLARE_FINAL_TYPE (SbUdpServer, sb_udp_server, SB, UDP_SERVER, SbServer)

G_END_DECLS
