/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-config.h"

#include <string.h>

#include <gio/gio.h>

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
  if (config->tls != NULL && !sb_tls_config_check (config->tls, config->use_udp, error))
    return NULL;
  return g_steal_pointer (&config);
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
         !a->batch == !b->batch;
}
