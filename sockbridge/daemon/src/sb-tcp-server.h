/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "sb-server.h"

G_BEGIN_DECLS

#define SB_TYPE_TCP_SERVER (sb_tcp_server_get_type ())
G_DECLARE_FINAL_TYPE (SbTcpServer, sb_tcp_server, SB, TCP_SERVER, SbServer)

G_END_DECLS
