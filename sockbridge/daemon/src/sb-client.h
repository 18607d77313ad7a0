/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _SbServer SbServer;

/* One peer of a server, named by a handle: a TCP connection or a UDP
 * source (address, port). */
#define SB_TYPE_CLIENT (sb_client_get_type ())
G_DECLARE_DERIVABLE_TYPE (SbClient, sb_client, SB, CLIENT, GObject)

struct _SbClientClass
{
  GObjectClass parent_class;

  /* Queues @data after what is queued; SB_ERROR_LIMIT_EXCEEDED, with
   * nothing queued, when the send queue would pass its bound. */
  gboolean (*send)       (SbClient  *self,
                          GBytes    *data,
                          GError   **error);
  /* Sends what is queued, then closes. */
  void     (*close)      (SbClient  *self);
  /* Closes now: undelivered input is delivered, queued output dropped. */
  void     (*disconnect) (SbClient  *self);
  /* Stops or resumes reading from the network. */
  void     (*set_paused) (SbClient  *self,
                          gboolean   paused);
};

void         sb_client_setup        (SbClient       *self,
                                     SbServer       *server,
                                     GSocketAddress *remote);
guint32      sb_client_get_handle   (SbClient       *self);
const char  *sb_client_get_address  (SbClient       *self);
guint16      sb_client_get_port     (SbClient       *self);
SbServer    *sb_client_get_server   (SbClient       *self);
/* One frame as the first four fields of ServerDataIn, which are also an
 * element of ServerDataInBatch: handle, data, address, remote port. The
 * data is new and floating, the others borrowed. */
void         sb_client_frame_fields (SbClient     *self,
                                     const guint8 *data,
                                     gsize         len,
                                     GVariant     *fields[4]);

gboolean     sb_client_send         (SbClient       *self,
                                     GBytes         *data,
                                     GError        **error);
void         sb_client_close        (SbClient       *self);
void         sb_client_disconnect   (SbClient       *self);
void         sb_client_set_paused   (SbClient       *self,
                                     gboolean        paused);

char        *sb_inet_address_to_string (GInetAddress *address);

G_END_DECLS
