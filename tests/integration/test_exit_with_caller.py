# SPDX-License-Identifier: LGPL-2.1-or-later
"""exit-with-caller: a server ends with the D-Bus connection that created it."""

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    Client,
    Signal,
    TcpClient,
    conn_status,
    port_is_free,
    server_status,
)


async def wait_gone(sb: Client, other: Client) -> None:
    """Disconnect other and wait until the bus announced it gone.

    The bus sends NameOwnerChanged to every subscriber, the daemon included,
    before it forwards any later call of ours to the daemon.
    """
    name = other.unique_name
    mark = sb.rec.mark()
    await sb.bus_call(
        "AddMatch",
        "s",
        [f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{name}'"],
    )
    other.disconnect()

    def gone(s: Signal) -> bool:
        return s.member == "NameOwnerChanged" and s.body[0] == name and s.body[2] == ""

    await sb.rec.wait_for(gone, start=mark, what=f"{name} to leave the bus")


async def test_exit_with_caller_server_ends_with_its_creator(sb: Client, bus_address: str) -> None:
    other = await Client.connect(bus_address)
    start = sb.rec.mark()
    port = await other.create_server(0, "\n", False, "ewc", {"exit-with-caller": True})
    await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    handle = await sb.new_handle(port, mark)

    await wait_gone(sb, other)
    off = await sb.wait_offline(port, start=mark)
    assert off.body == [port, "OFFLINE", "ewc"]
    conn_off = sb.rec.find(conn_status(handle=handle, status="OFFLINE"), mark)
    assert len(conn_off) == 1
    assert conn_off[0].index < off.index

    assert await client.read_to_eof() == b""
    await client.close()
    with pytest.raises(ConnectionRefusedError):
        await TcpClient.connect("127.0.0.1", port)
    assert port_is_free(port, use_udp=False)
    assert await sb.list_servers() == []


async def test_exit_with_caller_udp(sb: Client, bus_address: str) -> None:
    other = await Client.connect(bus_address)
    start = sb.rec.mark()
    port = await other.create_server(0, "", True, "ewc-udp", {"exit-with-caller": True})
    await sb.wait_online(port, start=start)
    await wait_gone(sb, other)
    await sb.wait_offline(port, start=start)
    assert port_is_free(port, use_udp=True)
    assert await sb.list_servers() == []


async def test_server_without_exit_with_caller_survives_its_creator(
    sb: Client, bus_address: str
) -> None:
    other = await Client.connect(bus_address)
    start = sb.rec.mark()
    stays = await other.create_server(0, "\n", False, "stays")
    explicit = await other.create_server(0, "\n", False, "stays-2", {"exit-with-caller": False})
    goes = await other.create_server(0, "\n", False, "goes", {"exit-with-caller": True})
    for p in (stays, explicit, goes):
        await sb.wait_online(p, start=start)

    await wait_gone(sb, other)
    await sb.wait_offline(goes, start=start)
    await sb.barrier()
    assert not sb.rec.find(server_status(stays, "OFFLINE"))
    assert not sb.rec.find(server_status(explicit, "OFFLINE"))
    assert [s.port for s in await sb.list_servers()] == sorted([stays, explicit])

    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", stays)
    await sb.new_handle(stays, mark)
    await client.close()


async def test_exit_with_caller_other_connection_of_same_user_unaffected(
    sb: Client, bus_address: str
) -> None:
    """Only the creating connection counts, not others of the same Unix user."""
    other = await Client.connect(bus_address)
    start = sb.rec.mark()
    mine = await sb.create_server(0, "", False, "mine-ewc", {"exit-with-caller": True})
    theirs = await other.create_server(0, "", False, "theirs-ewc", {"exit-with-caller": True})
    await sb.wait_online(mine, start=start)
    await sb.wait_online(theirs, start=start)
    await wait_gone(sb, other)
    await sb.wait_offline(theirs, start=start)
    await sb.barrier()
    assert not sb.rec.find(server_status(mine, "OFFLINE"))
    assert [s.port for s in await sb.list_servers()] == [mine]


async def test_exit_with_caller_server_is_handed_back_only_to_its_creator(
    sb: Client, bus_address: str
) -> None:
    """Idempotent create must not hand a port that closes when someone else leaves."""
    other = await Client.connect(bus_address)
    options = {"exit-with-caller": True}
    port = await other.create_server(0, "\n", False, "ewc-held", options)
    assert await other.create_server(port, "\n", False, "ewc-held", options) == port

    with pytest.raises(DBusError) as info:
        await sb.create_server(port, "\n", False, "ewc-held", options)
    assert info.value.type == "io.github.Sockbridge1.Error.AddressInUse"
    assert str(port) in info.value.text
    assert len(await sb.list_servers()) == 1

    await wait_gone(sb, other)
    await sb.wait_offline(port)
    assert await sb.create_server(port, "\n", False, "ewc-held", options) == port
