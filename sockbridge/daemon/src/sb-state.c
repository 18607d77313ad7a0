/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-state.h"

#include "sb-json-check.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/* Bumped on any change an older daemon would misread; it then refuses the
 * file rather than guessing. */
#define SB_STATE_VERSION 1

/* The guint settings, their JSON names and valid ranges: the same as the
 * CreateServerWithOptions() options of the same name. */
typedef struct
{
  const char *name;
  gsize       offset;
  guint32     min;
  guint32     max;
} SbUintMember;

G_STATIC_ASSERT (sizeof (guint) == sizeof (guint32));

static const SbUintMember sb_uint_members[] = {
  { "flush-timeout-ms",
    G_STRUCT_OFFSET (SbServerConfig, flush_timeout_ms), 0, G_MAXUINT32 },
  { "max-message-bytes",
    G_STRUCT_OFFSET (SbServerConfig, max_message_bytes), 1, SB_MAX_MAX_MESSAGE_BYTES },
  { "max-connections",
    G_STRUCT_OFFSET (SbServerConfig, max_connections), 1, SB_MAX_MAX_CONNECTIONS },
  { "udp-peer-timeout-ms",
    G_STRUCT_OFFSET (SbServerConfig, udp_peer_timeout_ms), 0, G_MAXUINT32 },
  { "owner-uid",
    G_STRUCT_OFFSET (SbServerConfig, owner_uid), 0, G_MAXUINT32 },
};

static const char * const sb_root_members[] = { "version", "servers", NULL };

static const char * const sb_server_members[] = {
  "port", "udp", "identifier", "delimiter", "bind-address", "batch",
  "flush-timeout-ms", "max-message-bytes", "max-connections",
  "udp-peer-timeout-ms", "owner-uid", "tls",
  "strip-delimiter", "allow-from", "multicast-groups", "multicast-interface",
  NULL
};

/* Members added after the first format, named and typed as their
 * CreateServerWithOptions() options. Each is optional and written only
 * when it is not its default, so that a file without them stays readable
 * by an older daemon, and one with them is refused by it ("unknown
 * member") instead of misread. */
typedef struct
{
  const char *name;
  const char *type;   /* "b", "s" or "as" */
} SbOptionMember;

static const SbOptionMember sb_option_members[] = {
  { "strip-delimiter", "b" },
  { "allow-from", "as" },
  { "multicast-groups", "as" },
  { "multicast-interface", "s" },
};

/* A TLS server's "tls" object: SbTlsText's texts, in their order, then
 * the rest. */
static const char * const sb_tls_members[] = {
  "certificate", "private-key", "password", "chain", "client-ca",
  "client-auth", "handshake-timeout-ms", NULL
};

G_STATIC_ASSERT (G_N_ELEMENTS (sb_tls_members) == SB_TLS_N_TEXTS + 3);

static GPtrArray *
config_array_new (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) sb_server_config_free);
}

/* Every parse error goes through here, so that each names where it is:
 * servers are counted from 1, as a person reading the file would. */
G_GNUC_PRINTF (3, 4)
static gboolean
invalid (GError     **error,
         guint        server,
         const char  *format,
         ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  if (server == 0)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, message);
  else
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "server %u: %s", server, message);
  return FALSE;
}

static gboolean
check_members (JsonObject         *object,
               const char * const *known,
               guint               server,
               GError            **error)
{
  g_autoptr(GList) members = json_object_get_members (object);

  for (GList *l = members; l != NULL; l = l->next) {
    if (!g_strv_contains (known, l->data))
      return invalid (error, server, "unknown member '%s'", (const char *) l->data);
  }
  return TRUE;
}

/* The member @name when it is a JSON value of @type; otherwise NULL and an
 * error saying it must be @what. The type is checked before anything reads
 * the node: json-glib's getters emit criticals on a node of another type,
 * and the input is untrusted. */
static JsonNode *
get_value (JsonObject  *object,
           guint        server,
           const char  *name,
           GType        type,
           const char  *what,
           GError     **error)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL) {
    invalid (error, server, "'%s' is missing; it must be %s", name, what);
    return NULL;
  }
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != type) {
    invalid (error, server, "'%s' must be %s", name, what);
    return NULL;
  }
  return node;
}

static gboolean
read_integer (JsonObject  *object,
              guint        server,
              const char  *name,
              gint64       min,
              gint64       max,
              gint64      *out,
              GError     **error)
{
  g_autofree char *what = g_strdup_printf ("an integer from %" G_GINT64_FORMAT
                                           " to %" G_GINT64_FORMAT, min, max);
  JsonNode *node = get_value (object, server, name, G_TYPE_INT64, what, error);

  if (node == NULL)
    return FALSE;
  *out = json_node_get_int (node);
  if (*out < min || *out > max)
    return invalid (error, server, "'%s' must be %s", name, what);
  return TRUE;
}

static gboolean
read_boolean (JsonObject  *object,
              guint        server,
              const char  *name,
              gboolean    *out,
              GError     **error)
{
  JsonNode *node = get_value (object, server, name, G_TYPE_BOOLEAN, "true or false", error);

  if (node == NULL)
    return FALSE;
  *out = json_node_get_boolean (node);
  return TRUE;
}

static const char *
read_string (JsonObject  *object,
             guint        server,
             const char  *name,
             GError     **error)
{
  JsonNode *node = get_value (object, server, name, G_TYPE_STRING, "a string", error);

  return node != NULL ? json_node_get_string (node) : NULL;
}

static gboolean
read_identifier (JsonObject      *object,
                 guint            server,
                 SbServerConfig  *config,
                 GError         **error)
{
  const char *identifier = read_string (object, server, "identifier", error);
  gsize len;

  if (identifier == NULL)
    return FALSE;
  len = strlen (identifier);
  if (len > SB_MAX_IDENTIFIER_BYTES)
    return invalid (error, server, "'identifier' is %" G_GSIZE_FORMAT
                    " bytes; at most %d are allowed", len, SB_MAX_IDENTIFIER_BYTES);
  g_free (config->identifier);
  config->identifier = g_strdup (identifier);
  return TRUE;
}

/* g_base64_decode() skips what is not base64 rather than failing, so the
 * text must also be exactly what encoding the result gives back. */
static GBytes *
decode_delimiter (const char *text)
{
  g_autofree guchar *decoded = NULL;
  g_autofree char *encoded = NULL;
  gsize len;

  decoded = g_base64_decode (text, &len);
  if (len > SB_MAX_DELIMITER_BYTES)
    return NULL;
  encoded = g_base64_encode (decoded, len);
  if (!g_str_equal (encoded, text))
    return NULL;
  return g_bytes_new_take (g_steal_pointer (&decoded), len);
}

static gboolean
read_delimiter (JsonObject      *object,
                guint            server,
                SbServerConfig  *config,
                GError         **error)
{
  const char *text = read_string (object, server, "delimiter", error);
  GBytes *delimiter;

  if (text == NULL)
    return FALSE;
  delimiter = decode_delimiter (text);
  if (delimiter == NULL)
    return invalid (error, server, "'delimiter' must be the base64 of at most %d bytes",
                    SB_MAX_DELIMITER_BYTES);
  g_bytes_unref (config->delimiter);
  config->delimiter = delimiter;
  return TRUE;
}

/* Optional: absent means all interfaces. */
static gboolean
read_bind_address (JsonObject      *object,
                   guint            server,
                   SbServerConfig  *config,
                   GError         **error)
{
  g_autoptr(GInetAddress) address = NULL;
  const char *text;

  if (!json_object_has_member (object, "bind-address"))
    return TRUE;
  text = read_string (object, server, "bind-address", error);
  if (text == NULL)
    return FALSE;
  address = g_inet_address_new_from_string (text);
  if (address == NULL)
    return invalid (error, server, "'bind-address' must be a numeric IPv4 or IPv6 address");
  config->bind_address = g_inet_address_to_string (address);
  return TRUE;
}

/* Optional and written only when true: a file without batch servers stays
 * readable by a daemon that predates the option, and one with them is
 * refused by it ("unknown member") rather than misread. */
static gboolean
read_batch (JsonObject      *object,
            guint            server,
            SbServerConfig  *config,
            GError         **error)
{
  if (!json_object_has_member (object, "batch"))
    return TRUE;
  return read_boolean (object, server, "batch", &config->batch, error);
}

static gboolean
read_tls_texts (JsonObject   *object,
                guint         server,
                SbTlsConfig  *tls,
                GError      **error)
{
  for (SbTlsText i = 0; i < SB_TLS_N_TEXTS; i++) {
    const char *text;

    if (!json_object_has_member (object, sb_tls_members[i]))
      continue;
    text = read_string (object, server, sb_tls_members[i], error);
    if (text == NULL)
      return FALSE;
    sb_tls_config_set_text (tls, i, text);
  }
  return TRUE;
}

static gboolean
read_tls_settings (JsonObject   *object,
                   guint         server,
                   SbTlsConfig  *tls,
                   GError      **error)
{
  const char *auth = read_string (object, server, "client-auth", error);
  gint64 timeout;

  if (auth == NULL)
    return FALSE;
  if (!sb_tls_client_auth_from_string (auth, &tls->client_auth))
    return invalid (error, server, "'client-auth' must be \"none\", \"request\" or \"require\"");
  if (!read_integer (object, server, "handshake-timeout-ms", 1, SB_TLS_MAX_HANDSHAKE_TIMEOUT_MS,
                     &timeout, error))
    return FALSE;
  tls->handshake_timeout_ms = (guint) timeout;
  return TRUE;
}

/* Optional: absent means no TLS. Its texts are what the caller gave:
 * paths, or PEM text and a password (this file is 0600 for them). */
static gboolean
read_tls (JsonObject      *object,
          guint            server,
          SbServerConfig  *config,
          GError         **error)
{
  g_autoptr(SbTlsConfig) tls = sb_tls_config_new ();
  g_autoptr(GError) check_error = NULL;
  JsonNode *node = json_object_get_member (object, "tls");
  JsonObject *members;

  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return invalid (error, server, "'tls' must be an object");
  members = json_node_get_object (node);
  if (!check_members (members, sb_tls_members, server, error) ||
      !read_tls_texts (members, server, tls, error) ||
      !read_tls_settings (members, server, tls, error))
    return FALSE;
  if (!sb_tls_config_check (tls, config->use_udp, &check_error))
    return invalid (error, server, "'tls': %s", check_error->message);
  config->tls = g_steal_pointer (&tls);
  return TRUE;
}

static gboolean
read_uints (JsonObject      *object,
            guint            server,
            SbServerConfig  *config,
            GError         **error)
{
  for (gsize i = 0; i < G_N_ELEMENTS (sb_uint_members); i++) {
    const SbUintMember *member = &sb_uint_members[i];
    gint64 value;

    if (!read_integer (object, server, member->name, member->min, member->max, &value, error))
      return FALSE;
    G_STRUCT_MEMBER (guint32, config, member->offset) = (guint32) value;
  }
  return TRUE;
}

/* The JSON value of @member as the GVariant its option takes, or NULL. */
static GVariant *
option_value (JsonNode             *node,
              const SbOptionMember *member)
{
  g_autoptr(GPtrArray) strings = NULL;
  JsonArray *array;

  if (g_str_equal (member->type, "b") && JSON_NODE_HOLDS_VALUE (node) &&
      json_node_get_value_type (node) == G_TYPE_BOOLEAN)
    return g_variant_new_boolean (json_node_get_boolean (node));
  if (g_str_equal (member->type, "s") && JSON_NODE_HOLDS_VALUE (node) &&
      json_node_get_value_type (node) == G_TYPE_STRING)
    return g_variant_new_string (json_node_get_string (node));
  if (!g_str_equal (member->type, "as") || !JSON_NODE_HOLDS_ARRAY (node))
    return NULL;
  array = json_node_get_array (node);
  strings = g_ptr_array_new ();
  for (guint i = 0; i < json_array_get_length (array); i++) {
    JsonNode *element = json_array_get_element (array, i);

    if (!JSON_NODE_HOLDS_VALUE (element) || json_node_get_value_type (element) != G_TYPE_STRING)
      return NULL;
    g_ptr_array_add (strings, (gpointer) json_node_get_string (element));
  }
  return g_variant_new_strv ((const char * const *) strings->pdata, strings->len);
}

static const char *
type_in_words (const char *type)
{
  if (g_str_equal (type, "b"))
    return "true or false";
  if (g_str_equal (type, "s"))
    return "a string";
  return "an array of strings";
}

/* The rules between options, as CreateServerWithOptions() checks them. */
static gboolean
check_options (const SbServerConfig  *config,
               guint                  server,
               GError               **error)
{
  g_autoptr(GError) check_error = NULL;

  if (sb_server_config_check (config, &check_error))
    return TRUE;
  return invalid (error, server, "%s", check_error->message);
}

/* Through the option parser, so that the file holds nothing a caller
 * could not have asked for. */
static gboolean
read_option_members (JsonObject      *object,
                     guint            server,
                     SbServerConfig  *config,
                     GError         **error)
{
  for (gsize i = 0; i < G_N_ELEMENTS (sb_option_members); i++) {
    const SbOptionMember *member = &sb_option_members[i];
    g_autoptr(GVariant) value = NULL;
    g_autoptr(GError) option_error = NULL;
    JsonNode *node = json_object_get_member (object, member->name);

    if (node == NULL)
      continue;
    value = option_value (node, member);
    if (value == NULL)
      return invalid (error, server, "'%s' must be %s", member->name, type_in_words (member->type));
    g_variant_ref_sink (value);
    if (!sb_server_config_apply_option (config, member->name, value, &option_error))
      return invalid (error, server, "%s", option_error->message);
  }
  return check_options (config, server, error);
}

static SbServerConfig *
parse_server (JsonObject  *object,
              guint        server,
              GError     **error)
{
  g_autoptr(SbServerConfig) config = sb_server_config_new ();
  gint64 port;

  if (!check_members (object, sb_server_members, server, error) ||
      !read_integer (object, server, "port", 1, G_MAXUINT16, &port, error) ||
      !read_boolean (object, server, "udp", &config->use_udp, error) ||
      !read_identifier (object, server, config, error) ||
      !read_delimiter (object, server, config, error) ||
      !read_bind_address (object, server, config, error) ||
      !read_batch (object, server, config, error) ||
      !read_tls (object, server, config, error) ||
      !read_uints (object, server, config, error) ||
      !read_option_members (object, server, config, error))
    return NULL;
  config->port = (guint16) port;
  return g_steal_pointer (&config);
}

/* Two entries for one port and protocol cannot both be re-created; which
 * one the user meant is anyone's guess. */
static gboolean
check_unique (GHashTable            *seen,
              const SbServerConfig  *config,
              guint                  server,
              GError               **error)
{
  gpointer key = GUINT_TO_POINTER ((guint) config->port << 1 | (config->use_udp ? 1 : 0));
  guint first = GPOINTER_TO_UINT (g_hash_table_lookup (seen, key));

  if (first != 0)
    return invalid (error, server, "port %u/%s is already in server %u",
                    config->port, config->use_udp ? "udp" : "tcp", first);
  g_hash_table_insert (seen, key, GUINT_TO_POINTER (server));
  return TRUE;
}

static GPtrArray *
parse_servers (JsonArray  *array,
               GError    **error)
{
  g_autoptr(GPtrArray) configs = config_array_new ();
  g_autoptr(GHashTable) seen = g_hash_table_new (NULL, NULL);
  guint n = json_array_get_length (array);

  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element (array, i);
    SbServerConfig *config;

    if (!JSON_NODE_HOLDS_OBJECT (node)) {
      invalid (error, i + 1, "not a JSON object");
      return NULL;
    }
    config = parse_server (json_node_get_object (node), i + 1, error);
    if (config == NULL)
      return NULL;
    g_ptr_array_add (configs, config);
    if (!check_unique (seen, config, i + 1, error))
      return NULL;
  }
  return g_steal_pointer (&configs);
}

static GPtrArray *
parse_root (JsonObject  *root,
            GError     **error)
{
  JsonNode *version = get_value (root, 0, "version", G_TYPE_INT64, "an integer", error);
  JsonNode *servers;

  /* The version first: a newer file may well have other members. */
  if (version == NULL)
    return NULL;
  if (json_node_get_int (version) != SB_STATE_VERSION) {
    invalid (error, 0, "version %" G_GINT64_FORMAT " is not supported; this sockbridge reads version %d",
             json_node_get_int (version), SB_STATE_VERSION);
    return NULL;
  }
  if (!check_members (root, sb_root_members, 0, error))
    return NULL;
  servers = json_object_get_member (root, "servers");
  if (servers == NULL || !JSON_NODE_HOLDS_ARRAY (servers)) {
    invalid (error, 0, "'servers' must be an array");
    return NULL;
  }
  return parse_servers (json_node_get_array (servers), error);
}

GPtrArray *
sb_state_parse (const char  *data,
                gsize        len,
                GError     **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) json_error = NULL;
  JsonNode *root;

  g_return_val_if_fail (data != NULL || len == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (data == NULL)
    data = "";
  /* This also rules out NUL bytes, which json-glib would stop at; with
   * check_json() refusing \u0000 and lone surrogates, every string read
   * is valid UTF-8 and can go out on D-Bus as it is. */
  if (len > G_MAXSSIZE || !g_utf8_validate_len (data, len, NULL)) {
    invalid (error, 0, "not UTF-8 text");
    return NULL;
  }
  if (!sb_json_check (data, len, error))
    return NULL;
  if (!json_parser_load_from_data (parser, data, (gssize) len, &json_error)) {
    invalid (error, 0, "not valid JSON: %s", json_error->message);
    return NULL;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    invalid (error, 0, "the top level is not a JSON object");
    return NULL;
  }
  return parse_root (json_node_get_object (root), error);
}

static void
add_int (JsonBuilder *builder,
         const char  *name,
         gint64       value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_int_value (builder, value);
}

static void
add_string (JsonBuilder *builder,
            const char  *name,
            const char  *value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_string_value (builder, value);
}

static void
add_variant (JsonBuilder *builder,
             GVariant    *value)
{
  GVariantIter iter;
  const char *element;

  if (g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN)) {
    json_builder_add_boolean_value (builder, g_variant_get_boolean (value));
  } else if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING)) {
    json_builder_add_string_value (builder, g_variant_get_string (value, NULL));
  } else {
    json_builder_begin_array (builder);
    g_variant_iter_init (&iter, value);
    while (g_variant_iter_next (&iter, "&s", &element))
      json_builder_add_string_value (builder, element);
    json_builder_end_array (builder);
  }
}

/* The members of sb_option_members whose option is not at its default,
 * with the value GetServerOptions() shows: the two cannot disagree. */
static void
add_option_members (JsonBuilder          *builder,
                    const SbServerConfig *config)
{
  g_autoptr(SbServerConfig) defaults = sb_server_config_new ();
  g_autoptr(GVariant) options = NULL;
  g_autoptr(GVariant) default_options = NULL;

  defaults->use_udp = config->use_udp;
  options = g_variant_ref_sink (sb_server_config_to_options (config));
  default_options = g_variant_ref_sink (sb_server_config_to_options (defaults));
  for (gsize i = 0; i < G_N_ELEMENTS (sb_option_members); i++) {
    const char *name = sb_option_members[i].name;
    g_autoptr(GVariant) value = g_variant_lookup_value (options, name, NULL);
    g_autoptr(GVariant) default_value = g_variant_lookup_value (default_options, name, NULL);

    if (value == NULL || (default_value != NULL && g_variant_equal (value, default_value)))
      continue;
    json_builder_set_member_name (builder, name);
    add_variant (builder, value);
  }
}

static void
add_tls (JsonBuilder       *builder,
         const SbTlsConfig *tls)
{
  if (tls == NULL)
    return;
  json_builder_set_member_name (builder, "tls");
  json_builder_begin_object (builder);
  for (SbTlsText i = 0; i < SB_TLS_N_TEXTS; i++) {
    if (sb_tls_config_get_text (tls, i) != NULL)
      add_string (builder, sb_tls_members[i], sb_tls_config_get_text (tls, i));
  }
  add_string (builder, "client-auth", sb_tls_client_auth_to_string (tls->client_auth));
  add_int (builder, "handshake-timeout-ms", tls->handshake_timeout_ms);
  json_builder_end_object (builder);
}

static void
add_server (JsonBuilder          *builder,
            const SbServerConfig *config)
{
  gsize len;
  const guint8 *delimiter = g_bytes_get_data (config->delimiter, &len);
  g_autofree char *base64 = g_base64_encode (delimiter, len);

  json_builder_begin_object (builder);
  add_int (builder, "port", config->port);
  json_builder_set_member_name (builder, "udp");
  json_builder_add_boolean_value (builder, config->use_udp);
  add_string (builder, "identifier", config->identifier);
  add_string (builder, "delimiter", base64);
  if (config->bind_address != NULL)
    add_string (builder, "bind-address", config->bind_address);
  if (config->batch) {
    json_builder_set_member_name (builder, "batch");
    json_builder_add_boolean_value (builder, TRUE);
  }
  add_tls (builder, config->tls);
  for (gsize i = 0; i < G_N_ELEMENTS (sb_uint_members); i++)
    add_int (builder, sb_uint_members[i].name,
             G_STRUCT_MEMBER (guint32, config, sb_uint_members[i].offset));
  add_option_members (builder, config);
  json_builder_end_object (builder);
}

/* Servers that end with their caller have nothing to come back to, and a
 * server never bound (port 0) has no port to come back on. */
static gboolean
is_persistent (const SbServerConfig *config)
{
  return !config->exit_with_caller && config->port != 0;
}

static JsonNode *
build_state (GPtrArray *configs)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();

  json_builder_begin_object (builder);
  add_int (builder, "version", SB_STATE_VERSION);
  json_builder_set_member_name (builder, "servers");
  json_builder_begin_array (builder);
  for (guint i = 0; i < configs->len; i++) {
    const SbServerConfig *config = g_ptr_array_index (configs, i);

    if (is_persistent (config))
      add_server (builder, config);
  }
  json_builder_end_array (builder);
  json_builder_end_object (builder);
  return json_builder_get_root (builder);
}

char *
sb_state_serialize (GPtrArray *configs,
                    gsize     *len)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = NULL;
  gsize text_len;
  char *data;

  g_return_val_if_fail (configs != NULL, NULL);

  root = build_state (configs);
  json_generator_set_pretty (generator, TRUE);
  json_generator_set_root (generator, root);
  text = json_generator_to_data (generator, &text_len);
  data = g_strconcat (text, "\n", NULL);
  if (len != NULL)
    *len = text_len + 1;
  return data;
}

/* Keeps the bad file for a person to look at, out of the way of the next
 * save; an older one is replaced, so at most one is ever kept. */
static void
move_aside (const char *path,
            const char *reason)
{
  g_autofree char *corrupt = g_strconcat (path, ".corrupt", NULL);
  int saved_errno;

  if (g_rename (path, corrupt) == 0) {
    g_warning ("Ignoring state file %s: %s; moved it to %s", path, reason, corrupt);
    return;
  }
  saved_errno = errno;
  g_warning ("Ignoring state file %s: %s; could not move it to %s: %s",
             path, reason, corrupt, g_strerror (saved_errno));
}

/* The most servers the daemon runs, written with the longest identifiers,
 * take about 2 MiB; anything much larger was not written by sockbridged,
 * and is refused before it is read into memory. A missing file passes. */
static gboolean
file_size_is_sane (const char  *path,
                   GError     **error)
{
  GStatBuf info;

  if (g_stat (path, &info) != 0 || info.st_size <= SB_STATE_MAX_BYTES)
    return TRUE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
               "it is %" G_GINT64_FORMAT " bytes; a state file is at most %d",
               (gint64) info.st_size, SB_STATE_MAX_BYTES);
  return FALSE;
}

GPtrArray *
sb_state_load (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *data = NULL;
  GPtrArray *configs = NULL;
  gsize len;

  g_return_val_if_fail (path != NULL, config_array_new ());

  if (!file_size_is_sane (path, &error))
    ;
  else if (g_file_get_contents (path, &data, &len, &error))
    configs = sb_state_parse (data, len, &error);
  else if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    return config_array_new ();
  if (configs != NULL)
    return configs;
  move_aside (path, error->message);
  return config_array_new ();
}

/* Fills @error from @saved_errno, naming what failed and the file. */
static gboolean
set_file_error (GError     **error,
                int          saved_errno,
                const char  *what,
                const char  *path)
{
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
               "Could not %s %s: %s", what, path, g_strerror (saved_errno));
  return FALSE;
}

static gboolean
write_all (int           fd,
           const char   *data,
           gsize         len)
{
  while (len > 0) {
    gssize n = write (fd, data, len);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return FALSE;
    data += n;
    len -= (gsize) n;
  }
  return TRUE;
}

/* After the rename, so that a power cut cannot undo it. Best effort: the
 * new file is in place already, and a file system that cannot sync a
 * directory has nothing better to offer. */
static void
sync_directory (const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0)
    return;
  fsync (fd);
  close (fd);
}

/* Fills a new temporary file beside the state file with @data. mkstemp()
 * creates it with at most 0600 (a umask only takes bits away), so it is
 * never readable by others; fchmod() then makes it exactly 0600 whatever
 * the umask, before the first byte is written. */
static gboolean
write_temporary (char        *tmp_path,
                 const char  *data,
                 gsize        len,
                 GError     **error)
{
  int fd = g_mkstemp_full (tmp_path, O_WRONLY | O_CLOEXEC, 0600);
  gboolean written;
  int saved_errno;

  if (fd < 0)
    return set_file_error (error, errno, "create the temporary file", tmp_path);
  written = fchmod (fd, 0600) == 0 && write_all (fd, data, len) && fsync (fd) == 0;
  saved_errno = errno;
  if (close (fd) != 0 && written) {
    written = FALSE;
    saved_errno = errno;
  }
  if (written)
    return TRUE;
  g_unlink (tmp_path);
  return set_file_error (error, saved_errno, "write the temporary file", tmp_path);
}

/* Not g_file_set_contents_full(): it gives a new file the requested mode
 * less the umask, and GLib 2.84 (Debian 13) keeps an existing file's mode
 * instead, so a state file once made 0644 would stay 0644, readable by
 * all, while it may come to hold secrets. The write is GLib's (temporary
 * file, fsync, rename over the old one), the mode always exactly 0600. */
gboolean
sb_state_save (const char  *path,
               GPtrArray   *configs,
               GError     **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *data = NULL;
  g_autofree char *tmp_path = NULL;
  int saved_errno;
  gsize len;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (configs != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    return set_file_error (error, errno, "create the state directory", dir);
  data = sb_state_serialize (configs, &len);
  tmp_path = g_strconcat (path, ".XXXXXX", NULL);
  if (!write_temporary (tmp_path, data, len, error))
    return FALSE;
  if (g_rename (tmp_path, path) != 0) {
    saved_errno = errno;
    g_unlink (tmp_path);
    return set_file_error (error, saved_errno, "replace the state file", path);
  }
  sync_directory (dir);
  return TRUE;
}
