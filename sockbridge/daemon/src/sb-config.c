/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-config.h"

#include <string.h>

#include <gio/gio.h>

#include "sb-allow.h"
#include "sb-error.h"

typedef struct _SbOption SbOption;

typedef gboolean (*SbOptionApplyFunc) (const SbOption  *option,
                                       GVariant        *value,
                                       SbServerConfig  *config,
                                       GError         **error);

/* One CreateServerWithOptions() option. The guint options share one apply
 * function, which finds its field and range here. */
struct _SbOption
{
  const char        *key;
  const char        *type;
  SbOptionApplyFunc  apply;
  gsize              offset;
  guint              min;
  guint              max;
};

SbServerConfig *
sb_server_config_new (void)
{
  SbServerConfig *self = g_new0 (SbServerConfig, 1);

  self->identifier = g_strdup ("");
  self->delimiter = g_bytes_new (NULL, 0);
  self->flush_timeout_ms = SB_DEFAULT_FLUSH_TIMEOUT_MS;
  self->max_message_bytes = SB_DEFAULT_MAX_MESSAGE_BYTES;
  self->max_connections = SB_DEFAULT_MAX_CONNECTIONS;
  self->udp_peer_timeout_ms = SB_DEFAULT_UDP_PEER_TIMEOUT_MS;
  return self;
}

SbServerConfig *
sb_server_config_copy (const SbServerConfig *self)
{
  SbServerConfig *copy;

  g_return_val_if_fail (self != NULL, NULL);

  copy = g_memdup2 (self, sizeof *self);
  copy->identifier = g_strdup (self->identifier);
  /* GBytes is immutable: sharing it is as good as copying it. */
  copy->delimiter = g_bytes_ref (self->delimiter);
  copy->bind_address = g_strdup (self->bind_address);
  copy->allow_from = g_strdupv (self->allow_from);
  copy->multicast_groups = g_strdupv (self->multicast_groups);
  copy->multicast_interface = g_strdup (self->multicast_interface);
  copy->tls = sb_tls_config_copy (self->tls);
  return copy;
}

void
sb_server_config_free (SbServerConfig *self)
{
  if (self == NULL)
    return;
  g_free (self->identifier);
  g_bytes_unref (self->delimiter);
  g_free (self->bind_address);
  g_strfreev (self->allow_from);
  g_strfreev (self->multicast_groups);
  g_free (self->multicast_interface);
  sb_tls_config_free (self->tls);
  g_free (self);
}

static gboolean
check_length (const char  *what,
              gsize        len,
              gsize        max,
              GError     **error)
{
  if (len <= max)
    return TRUE;
  g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
               "%s is %" G_GSIZE_FORMAT " bytes; at most %" G_GSIZE_FORMAT " are allowed",
               what, len, max);
  return FALSE;
}

static gboolean
apply_bind_address (const SbOption  *option,
                    GVariant        *value,
                    SbServerConfig  *config,
                    GError         **error)
{
  const char *text = g_variant_get_string (value, NULL);
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string (text);

  if (address == NULL) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "option '%s' must be a numeric IPv4 or IPv6 address, not '%s'",
                 option->key, text);
    return FALSE;
  }
  /* Canonical, so that "0:0::1" and "::1" are the same settings. */
  g_free (config->bind_address);
  config->bind_address = g_inet_address_to_string (address);
  return TRUE;
}

static gboolean
apply_delimiter_bytes (const SbOption  *option,
                       GVariant        *value,
                       SbServerConfig  *config,
                       GError         **error)
{
  g_autofree char *what = g_strdup_printf ("option '%s'", option->key);

  if (!check_length (what, g_variant_get_size (value), SB_MAX_DELIMITER_BYTES, error))
    return FALSE;
  g_bytes_unref (config->delimiter);
  config->delimiter = g_variant_get_data_as_bytes (value);
  return TRUE;
}

static gboolean
apply_boolean (const SbOption  *option,
               GVariant        *value,
               SbServerConfig  *config,
               GError         **error)
{
  G_STRUCT_MEMBER (gboolean, config, option->offset) = g_variant_get_boolean (value);
  return TRUE;
}

static gboolean
apply_uint (const SbOption  *option,
            GVariant        *value,
            SbServerConfig  *config,
            GError         **error)
{
  guint32 number = g_variant_get_uint32 (value);

  if (number < option->min || number > option->max) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "option '%s' must be from %u to %u, not %u",
                 option->key, option->min, option->max, number);
    return FALSE;
  }
  G_STRUCT_MEMBER (guint, config, option->offset) = number;
  return TRUE;
}

/* The lists' bounds keep a state file and the kernel's membership table
 * small; one message for all of them. */
static gboolean
check_entry_count (const SbOption  *option,
                   gsize            n,
                   guint            max,
                   GError         **error)
{
  if (n <= max)
    return TRUE;
  g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
               "option '%s' has %" G_GSIZE_FORMAT " entries; at most %u are allowed",
               option->key, n, max);
  return FALSE;
}

/* Each entry as sb_allow_entry_canonical() writes it, so that equal
 * settings compare equal. An empty list admits everyone, as no list
 * does: a server that admits nobody serves nothing, and an empty list is
 * what a form left blank sends. */
static gboolean
apply_allow_from (const SbOption  *option,
                  GVariant        *value,
                  SbServerConfig  *config,
                  GError         **error)
{
  gsize n = g_variant_n_children (value);
  g_auto(GStrv) entries = NULL;

  if (!check_entry_count (option, n, SB_MAX_ALLOW_FROM, error))
    return FALSE;
  entries = g_new0 (char *, n + 1);
  for (gsize i = 0; i < n; i++) {
    g_autoptr(GVariant) entry = g_variant_get_child_value (value, i);

    entries[i] = sb_allow_entry_canonical (g_variant_get_string (entry, NULL), error);
    if (entries[i] == NULL)
      return FALSE;
  }
  g_strfreev (config->allow_from);
  config->allow_from = n > 0 ? g_steal_pointer (&entries) : NULL;
  return TRUE;
}

/* Multicast is UDP's: a TCP server with a multicast option is refused
 * rather than left to ignore it. */
static gboolean
check_udp (const SbOption  *option,
           SbServerConfig  *config,
           GError         **error)
{
  if (config->use_udp)
    return TRUE;
  g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
               "option '%s' is for UDP servers only", option->key);
  return FALSE;
}

static char *
multicast_group_canonical (const char  *text,
                           GError     **error)
{
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string (text);

  if (address == NULL || !g_inet_address_get_is_multicast (address)) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "multicast-groups entry '%s' is not a numeric IPv4 or IPv6 multicast address "
                 "(in 224.0.0.0/4 or ff00::/8)", text);
    return NULL;
  }
  return g_inet_address_to_string (address);
}

/* Each group as GLib prints it, so that equal settings compare equal; a
 * group given twice is refused, as the kernel would refuse to join it
 * twice. */
static gboolean
apply_multicast_groups (const SbOption  *option,
                        GVariant        *value,
                        SbServerConfig  *config,
                        GError         **error)
{
  gsize n = g_variant_n_children (value);
  g_auto(GStrv) groups = NULL;

  if (!check_udp (option, config, error))
    return FALSE;
  if (!check_entry_count (option, n, SB_MAX_MULTICAST_GROUPS, error))
    return FALSE;
  groups = g_new0 (char *, n + 1);
  for (gsize i = 0; i < n; i++) {
    g_autoptr(GVariant) entry = g_variant_get_child_value (value, i);
    const char *text = g_variant_get_string (entry, NULL);

    groups[i] = multicast_group_canonical (text, error);
    if (groups[i] == NULL)
      return FALSE;
    for (gsize j = 0; j < i; j++) {
      if (g_str_equal (groups[j], groups[i])) {
        g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                     "multicast-groups entry '%s' names group %s a second time", text, groups[i]);
        return FALSE;
      }
    }
  }
  g_strfreev (config->multicast_groups);
  config->multicast_groups = n > 0 ? g_steal_pointer (&groups) : NULL;
  return TRUE;
}

/* What Linux takes as an interface name (dev_valid_name()); whether the
 * interface exists is asked when the server starts, since it may come
 * and go. */
static gboolean
apply_multicast_interface (const SbOption  *option,
                           GVariant        *value,
                           SbServerConfig  *config,
                           GError         **error)
{
  const char *name = g_variant_get_string (value, NULL);
  gsize len = strlen (name);

  if (!check_udp (option, config, error))
    return FALSE;
  if (len == 0 || len > 15 || g_str_equal (name, ".") || g_str_equal (name, "..") ||
      strpbrk (name, "/: \t\n\r\v\f") != NULL) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "option '%s' must be a network interface name (1 to 15 bytes, "
                 "without '/', ':' or white space), not '%s'", option->key, name);
    return FALSE;
  }
  g_free (config->multicast_interface);
  config->multicast_interface = g_strdup (name);
  return TRUE;
}

/* ---- TLS options ---------------------------------------------------------- */

static SbTlsConfig *
tls_of (SbServerConfig *config)
{
  if (config->tls == NULL)
    config->tls = sb_tls_config_new ();
  return config->tls;
}

/* The text options, each an SbTlsText in ->offset. */
static gboolean
apply_tls_text (const SbOption  *option,
                GVariant        *value,
                SbServerConfig  *config,
                GError         **error)
{
  sb_tls_config_set_text (tls_of (config), (SbTlsText) option->offset,
                          g_variant_get_string (value, NULL));
  return TRUE;
}

static gboolean
apply_tls_client_auth (const SbOption  *option,
                       GVariant        *value,
                       SbServerConfig  *config,
                       GError         **error)
{
  const char *text = g_variant_get_string (value, NULL);

  if (!sb_tls_client_auth_from_string (text, &tls_of (config)->client_auth)) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "option '%s' must be \"none\", \"request\" or \"require\", not \"%.32s\"",
                 option->key, text);
    return FALSE;
  }
  return TRUE;
}

static gboolean
apply_tls_uint (const SbOption  *option,
                GVariant        *value,
                SbServerConfig  *config,
                GError         **error)
{
  guint32 number = g_variant_get_uint32 (value);

  if (number < option->min || number > option->max) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "option '%s' must be from %u to %u, not %u",
                 option->key, option->min, option->max, number);
    return FALSE;
  }
  G_STRUCT_MEMBER (guint, tls_of (config), option->offset) = number;
  return TRUE;
}

/* In the order the error message lists them. */
static const SbOption sb_options[] = {
  { "allow-from", "as", apply_allow_from, 0, 0, 0 },
  { "batch", "b", apply_boolean,
    G_STRUCT_OFFSET (SbServerConfig, batch), 0, 0 },
  { "bind-address", "s", apply_bind_address, 0, 0, 0 },
  { "delimiter-bytes", "ay", apply_delimiter_bytes, 0, 0, 0 },
  { "exit-with-caller", "b", apply_boolean,
    G_STRUCT_OFFSET (SbServerConfig, exit_with_caller), 0, 0 },
  { "flush-timeout-ms", "u", apply_uint,
    G_STRUCT_OFFSET (SbServerConfig, flush_timeout_ms), 0, G_MAXUINT32 },
  { "max-connections", "u", apply_uint,
    G_STRUCT_OFFSET (SbServerConfig, max_connections), 1, SB_MAX_MAX_CONNECTIONS },
  { "max-message-bytes", "u", apply_uint,
    G_STRUCT_OFFSET (SbServerConfig, max_message_bytes), 1, SB_MAX_MAX_MESSAGE_BYTES },
  { "multicast-groups", "as", apply_multicast_groups, 0, 0, 0 },
  { "multicast-interface", "s", apply_multicast_interface, 0, 0, 0 },
  { "strip-delimiter", "b", apply_boolean,
    G_STRUCT_OFFSET (SbServerConfig, strip_delimiter), 0, 0 },
  { "tls-certificate", "s", apply_tls_text, SB_TLS_CERTIFICATE, 0, 0 },
  { "tls-chain", "s", apply_tls_text, SB_TLS_CHAIN, 0, 0 },
  { "tls-client-auth", "s", apply_tls_client_auth, 0, 0, 0 },
  { "tls-client-ca", "s", apply_tls_text, SB_TLS_CLIENT_CA, 0, 0 },
  { "tls-handshake-timeout-ms", "u", apply_tls_uint,
    G_STRUCT_OFFSET (SbTlsConfig, handshake_timeout_ms), 1, SB_TLS_MAX_HANDSHAKE_TIMEOUT_MS },
  { "tls-password", "s", apply_tls_text, SB_TLS_PASSWORD, 0, 0 },
  { "tls-private-key", "s", apply_tls_text, SB_TLS_PRIVATE_KEY, 0, 0 },
  { "udp-peer-timeout-ms", "u", apply_uint,
    G_STRUCT_OFFSET (SbServerConfig, udp_peer_timeout_ms), 0, G_MAXUINT32 },
};

static const SbOption *
find_option (const char  *key,
             GError     **error)
{
  g_autoptr(GString) known = g_string_new (NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (sb_options); i++) {
    if (g_str_equal (sb_options[i].key, key))
      return &sb_options[i];
    g_string_append_printf (known, "%s%s", i > 0 ? ", " : "", sb_options[i].key);
  }
  g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
               "unknown option '%s'; known options are: %s", key, known->str);
  return NULL;
}

static gboolean
apply_option (SbServerConfig  *config,
              const char      *key,
              GVariant        *value,
              GError         **error)
{
  const SbOption *option = find_option (key, error);

  if (option == NULL)
    return FALSE;
  if (!g_str_equal (g_variant_get_type_string (value), option->type)) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "option '%s' must be of type '%s', not '%s'",
                 key, option->type, g_variant_get_type_string (value));
    return FALSE;
  }
  return option->apply (option, value, config, error);
}

static gboolean
apply_options (SbServerConfig  *config,
               GVariant        *options,
               GError         **error)
{
  GVariantIter iter;

  g_variant_iter_init (&iter, options);
  for (;;) {
    g_autoptr(GVariant) value = NULL;
    const char *key;

    if (!g_variant_iter_next (&iter, "{&sv}", &key, &value))
      return TRUE;
    if (!apply_option (config, key, value, error))
      return FALSE;
  }
}

SbServerConfig *
sb_server_config_new_from_args (guint16      port,
                                const char  *delimiter,
                                gboolean     use_udp,
                                const char  *identifier,
                                GVariant    *options,
                                GError     **error)
{
  g_autoptr(SbServerConfig) config = NULL;
  gsize delimiter_len;

  g_return_val_if_fail (delimiter != NULL, NULL);
  g_return_val_if_fail (identifier != NULL, NULL);
  g_return_val_if_fail (options == NULL ||
                        g_variant_is_of_type (options, G_VARIANT_TYPE_VARDICT), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  delimiter_len = strlen (delimiter);
  if (!check_length ("identifier", strlen (identifier), SB_MAX_IDENTIFIER_BYTES, error) ||
      !check_length ("delimiter", delimiter_len, SB_MAX_DELIMITER_BYTES, error))
    return NULL;
  /* D-Bus already guarantees it; other callers might not, and every signal
   * carries the identifier as a D-Bus string. */
  if (!g_utf8_validate (identifier, -1, NULL)) {
    g_set_error_literal (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                         "identifier is not valid UTF-8");
    return NULL;
  }

  config = sb_server_config_new ();
  config->port = port;
  config->use_udp = !!use_udp;
  g_free (config->identifier);
  config->identifier = g_strdup (identifier);
  g_bytes_unref (config->delimiter);
  config->delimiter = g_bytes_new (delimiter, delimiter_len);

  if (options != NULL && !apply_options (config, options, error))
    return NULL;
  if (!sb_server_config_check (config, error))
    return NULL;
  if (config->tls != NULL && !sb_tls_config_check (config->tls, config->use_udp, error))
    return NULL;
  return g_steal_pointer (&config);
}

/* NULL and empty are the same list. */
static gboolean
strv_equal (const char * const *a,
            const char * const *b)
{
  static const char * const none[] = { NULL };

  return g_strv_equal (a != NULL ? a : none, b != NULL ? b : none);
}

gboolean
sb_server_config_same_settings (const SbServerConfig *a,
                                const SbServerConfig *b)
{
  g_return_val_if_fail (a != NULL, FALSE);
  g_return_val_if_fail (b != NULL, FALSE);

  return !a->use_udp == !b->use_udp &&
         sb_tls_config_equal (a->tls, b->tls) &&
         g_str_equal (a->identifier, b->identifier) &&
         g_bytes_equal (a->delimiter, b->delimiter) &&
         g_strcmp0 (a->bind_address, b->bind_address) == 0 &&
         a->flush_timeout_ms == b->flush_timeout_ms &&
         a->max_message_bytes == b->max_message_bytes &&
         a->max_connections == b->max_connections &&
         a->udp_peer_timeout_ms == b->udp_peer_timeout_ms &&
         !a->exit_with_caller == !b->exit_with_caller &&
         !a->batch == !b->batch &&
         !a->strip_delimiter == !b->strip_delimiter &&
         strv_equal ((const char * const *) a->allow_from, (const char * const *) b->allow_from) &&
         strv_equal ((const char * const *) a->multicast_groups,
                     (const char * const *) b->multicast_groups) &&
         g_strcmp0 (a->multicast_interface, b->multicast_interface) == 0;
}

static void
add_option (GVariantBuilder *builder,
            const char      *key,
            GVariant        *value)
{
  g_variant_builder_add (builder, "{sv}", key, value);
}

static GVariant *
strv_variant (GStrv strv)
{
  return g_variant_new_strv ((const char * const *) strv, strv != NULL ? -1 : 0);
}

/* In the order of sb_options[]. Options whose default is no value at all
 * are left out while unset (bind-address: all interfaces;
 * multicast-interface: the kernel's choice), since no value of their type
 * means "unset" and the answer must be valid to pass back.
 * Secrets never go in here: GetServerOptions() answers whoever may touch
 * the server, and its answer travels over the bus in clear. */
/* A TLS server's settings, its secrets left out: the password never, and a
 * certificate, key, chain or CA bundle only as the path it was given
 * (inline PEM text may hold a private key). */
static void
add_tls_options (GVariantBuilder   *builder,
                 const SbTlsConfig *tls)
{
  static const struct {
    SbTlsText   text;
    const char *key;
  } paths[] = {
    { SB_TLS_CERTIFICATE, "tls-certificate" },
    { SB_TLS_CHAIN, "tls-chain" },
    { SB_TLS_CLIENT_CA, "tls-client-ca" },
    { SB_TLS_PRIVATE_KEY, "tls-private-key" },
  };

  if (tls == NULL)
    return;
  for (gsize i = 0; i < G_N_ELEMENTS (paths); i++) {
    const char *value = sb_tls_config_get_text (tls, paths[i].text);

    if (value != NULL && g_path_is_absolute (value))
      add_option (builder, paths[i].key, g_variant_new_string (value));
  }
  add_option (builder, "tls-client-auth",
              g_variant_new_string (sb_tls_client_auth_to_string (tls->client_auth)));
  add_option (builder, "tls-handshake-timeout-ms", g_variant_new_uint32 (tls->handshake_timeout_ms));
}

GVariant *
sb_server_config_to_options (const SbServerConfig *config)
{
  GVariantBuilder builder;
  gsize len;
  gconstpointer delimiter;

  g_return_val_if_fail (config != NULL, NULL);

  delimiter = g_bytes_get_data (config->delimiter, &len);
  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  add_option (&builder, "allow-from", strv_variant (config->allow_from));
  add_option (&builder, "batch", g_variant_new_boolean (config->batch));
  if (config->bind_address != NULL)
    add_option (&builder, "bind-address", g_variant_new_string (config->bind_address));
  add_option (&builder, "delimiter-bytes",
              g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, delimiter, len, 1));
  add_option (&builder, "exit-with-caller", g_variant_new_boolean (config->exit_with_caller));
  add_option (&builder, "flush-timeout-ms", g_variant_new_uint32 (config->flush_timeout_ms));
  add_option (&builder, "max-connections", g_variant_new_uint32 (config->max_connections));
  add_option (&builder, "max-message-bytes", g_variant_new_uint32 (config->max_message_bytes));
  /* UDP's only: a TCP server refuses them, so its answer leaves them out. */
  if (config->use_udp)
    add_option (&builder, "multicast-groups", strv_variant (config->multicast_groups));
  if (config->multicast_interface != NULL)
    add_option (&builder, "multicast-interface", g_variant_new_string (config->multicast_interface));
  add_option (&builder, "strip-delimiter", g_variant_new_boolean (config->strip_delimiter));
  add_tls_options (&builder, config->tls);
  add_option (&builder, "udp-peer-timeout-ms", g_variant_new_uint32 (config->udp_peer_timeout_ms));
  return g_variant_builder_end (&builder);
}

gboolean
sb_server_config_apply_option (SbServerConfig  *config,
                               const char      *key,
                               GVariant        *value,
                               GError         **error)
{
  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return apply_option (config, key, value, error);
}

/* A socket bound to a unicast address receives no group's datagrams, and
 * one bound to one family none of the other's: such a server would join
 * its groups and never hear them. */
static gboolean
check_multicast_bind (const SbServerConfig  *config,
                      GError               **error)
{
  g_autoptr(GInetAddress) bound = NULL;

  if (config->multicast_groups == NULL || config->bind_address == NULL)
    return TRUE;
  bound = g_inet_address_new_from_string (config->bind_address);
  if (!g_inet_address_get_is_any (bound) && !g_inet_address_get_is_multicast (bound)) {
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "bind-address %s is a unicast address, and a socket bound to it receives "
                 "no multicast group's datagrams: leave bind-address out, or give a "
                 "wildcard or a group", config->bind_address);
    return FALSE;
  }
  for (guint i = 0; config->multicast_groups[i] != NULL; i++) {
    g_autoptr(GInetAddress) group = g_inet_address_new_from_string (config->multicast_groups[i]);

    if (g_inet_address_get_family (group) != g_inet_address_get_family (bound)) {
      g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                   "multicast group %s and bind-address %s are of different families: "
                   "leave bind-address out to serve both", config->multicast_groups[i],
                   config->bind_address);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
sb_server_config_check (const SbServerConfig  *config,
                        GError               **error)
{
  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return check_multicast_bind (config, error);
}
