/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-client.h"

#include <string.h>

typedef struct
{
  guint32   handle;
  guint16   port;
  char     *address;
  SbServer *server;     /* unowned: a server outlives its clients */
  GVariant *fields[4];  /* handle, NULL, address, port; see sb_client_frame_fields() */
} SbClientPrivate;

G_DEFINE_TYPE_WITH_PRIVATE (SbClient, sb_client, G_TYPE_OBJECT)

/* Handles are never reused, so a stale handle held by a caller can never
 * reach a newer client. The daemon is single-threaded. */
static guint32 sb_next_handle = 1;

static void
sb_client_finalize (GObject *object)
{
  SbClientPrivate *priv = sb_client_get_instance_private (SB_CLIENT (object));

  g_free (priv->address);
  for (gsize i = 0; i < G_N_ELEMENTS (priv->fields); i++)
    g_clear_pointer (&priv->fields[i], g_variant_unref);
  G_OBJECT_CLASS (sb_client_parent_class)->finalize (object);
}

static void
sb_client_class_init (SbClientClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = sb_client_finalize;
}

static void
sb_client_init (SbClient *self)
{
}

/* An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d; users
 * know it as a.b.c.d. */
char *
sb_inet_address_to_string (GInetAddress *address)
{
  const guint8 *bytes = g_inet_address_to_bytes (address);
  static const guint8 mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
  g_autoptr(GInetAddress) v4 = NULL;

  if (g_inet_address_get_family (address) != G_SOCKET_FAMILY_IPV6 ||
      memcmp (bytes, mapped_prefix, sizeof mapped_prefix) != 0)
    return g_inet_address_to_string (address);

  v4 = g_inet_address_new_from_bytes (bytes + 12, G_SOCKET_FAMILY_IPV4);
  return g_inet_address_to_string (v4);
}

void
sb_client_setup (SbClient       *self,
                 SbServer       *server,
                 GSocketAddress *remote)
{
  SbClientPrivate *priv = sb_client_get_instance_private (self);
  GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (remote);

  priv->handle = sb_next_handle++;
  if (sb_next_handle == 0)
    g_error ("all 2^32 - 1 client handles have been used; restart sockbridged");
  priv->server = server;
  priv->port = g_inet_socket_address_get_port (inet);
  priv->address = sb_inet_address_to_string (g_inet_socket_address_get_address (inet));
}

guint32
sb_client_get_handle (SbClient *self)
{
  SbClientPrivate *priv = sb_client_get_instance_private (self);

  return priv->handle;
}

const char *
sb_client_get_address (SbClient *self)
{
  SbClientPrivate *priv = sb_client_get_instance_private (self);

  return priv->address;
}

guint16
sb_client_get_port (SbClient *self)
{
  SbClientPrivate *priv = sb_client_get_instance_private (self);

  return priv->port;
}

/* The fields other than the data are built at the first frame and kept:
 * they never change, building them for every signal was a fifth of its
 * cost, and a client that never sends costs no memory for them. */
void
sb_client_frame_fields (SbClient     *self,
                        const guint8 *data,
                        gsize         len,
                        GVariant     *fields[4])
{
  SbClientPrivate *priv = sb_client_get_instance_private (self);

  if (priv->fields[0] == NULL) {
    priv->fields[0] = g_variant_ref_sink (g_variant_new_uint32 (priv->handle));
    priv->fields[2] = g_variant_ref_sink (g_variant_new_string (priv->address));
    priv->fields[3] = g_variant_ref_sink (g_variant_new_uint16 (priv->port));
  }
  memcpy (fields, priv->fields, sizeof priv->fields);
  fields[1] = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1);
}

SbServer *
sb_client_get_server (SbClient *self)
{
  SbClientPrivate *priv = sb_client_get_instance_private (self);

  return priv->server;
}

gboolean
sb_client_send (SbClient  *self,
                GBytes    *data,
                GError   **error)
{
  return SB_CLIENT_GET_CLASS (self)->send (self, data, error);
}

void
sb_client_close (SbClient *self)
{
  SB_CLIENT_GET_CLASS (self)->close (self);
}

void
sb_client_disconnect (SbClient *self)
{
  SB_CLIENT_GET_CLASS (self)->disconnect (self);
}

void
sb_client_set_paused (SbClient *self,
                      gboolean  paused)
{
  SbClientClass *klass = SB_CLIENT_GET_CLASS (self);

  if (klass->set_paused != NULL)
    klass->set_paused (self, paused);
}
