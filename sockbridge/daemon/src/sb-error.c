/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "sb-error.h"

#include <gio/gio.h>

static const GDBusErrorEntry sb_error_entries[] = {
  { SB_ERROR_FAILED,            "io.github.Sockbridge1.Error.Failed" },
  { SB_ERROR_ADDRESS_IN_USE,    "io.github.Sockbridge1.Error.AddressInUse" },
  { SB_ERROR_PERMISSION_DENIED, "io.github.Sockbridge1.Error.PermissionDenied" },
  { SB_ERROR_INVALID_ARGUMENT,  "io.github.Sockbridge1.Error.InvalidArgument" },
  { SB_ERROR_NOT_FOUND,         "io.github.Sockbridge1.Error.NotFound" },
  { SB_ERROR_LIMIT_EXCEEDED,    "io.github.Sockbridge1.Error.LimitExceeded" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (sb_error_entries) == SB_ERROR_LIMIT_EXCEEDED + 1);

GQuark
sb_error_quark (void)
{
  static gsize quark = 0;

  g_dbus_error_register_error_domain ("sb-error-quark",
                                      &quark,
                                      sb_error_entries,
                                      G_N_ELEMENTS (sb_error_entries));
  return (GQuark) quark;
}
