-- Wireshark dissectors for fieldcon's own protocols, so captures exported by
-- `fieldcon trace -w` (or taken with tcpdump) open decoded in Wireshark:
--
--   RHCP      remote host configuration (docs/protocols/rhcp.md), UDP 6655
--   TNTUNNEL  the TN tunnel's message headers (docs/protocols/tunnel.md)
--
-- Install: copy to ~/.local/lib/wireshark/plugins/ (or run
--   tshark -X lua_script:contrib/wireshark/fieldcon.lua -r trace.pcapng).
-- Both protocols are also recognised on any UDP port by their headers
-- (heuristics), and ports can be set in Preferences > Protocols.
--
-- Nothing secret is decoded: the RHCP HMAC, the Noise handshake messages,
-- cookies and sealed payloads are shown only with their sizes.

---------------------------------------------------------------------------
-- RHCP
---------------------------------------------------------------------------

local rhcp = Proto("rhcp", "fieldcon Remote Host Configuration Protocol")

local rhcp_types = { [1] = "probe", [2] = "stop", [3] = "release", [4] = "ack" }
local tlv_names = {
    [1] = "CLIENT_ID", [2] = "ADDRESS", [3] = "GATEWAY", [4] = "ROUTE", [5] = "SERVER",
    [6] = "DHCP_SERVER", [7] = "SEQUENCE", [8] = "VALIDITY", [9] = "FORMAL_ADDRESS",
    [10] = "ACK_SEQUENCE",
}

local rf = {
    magic        = ProtoField.string("rhcp.magic", "Magic"),
    version      = ProtoField.uint8("rhcp.version", "Version"),
    type         = ProtoField.uint8("rhcp.type", "Type", base.DEC, rhcp_types),
    length       = ProtoField.uint16("rhcp.length", "Length"),
    reserved     = ProtoField.uint16("rhcp.reserved", "Reserved", base.HEX),
    tlv          = ProtoField.none("rhcp.tlv", "TLV"),
    tlv_type     = ProtoField.uint8("rhcp.tlv.type", "TLV type", base.DEC, tlv_names),
    tlv_length   = ProtoField.uint8("rhcp.tlv.length", "TLV length"),
    client_id    = ProtoField.string("rhcp.client_id", "Client ID"),
    address      = ProtoField.ipv4("rhcp.address", "Address"),
    address6     = ProtoField.ipv6("rhcp.address6", "Address"),
    prefix_len   = ProtoField.uint8("rhcp.prefix_len", "Prefix length"),
    gateway      = ProtoField.ipv4("rhcp.gateway", "Gateway"),
    gateway6     = ProtoField.ipv6("rhcp.gateway6", "Gateway"),
    route        = ProtoField.string("rhcp.route", "Route"),
    server       = ProtoField.ipv4("rhcp.server", "Server"),
    server6      = ProtoField.ipv6("rhcp.server6", "Server"),
    dhcp_server  = ProtoField.ipv4("rhcp.dhcp_server", "DHCP server"),
    dhcp_server6 = ProtoField.ipv6("rhcp.dhcp_server6", "DHCP server"),
    sequence     = ProtoField.uint64("rhcp.sequence", "Sequence"),
    issued       = ProtoField.absolute_time("rhcp.validity.issued", "Issued", base.UTC),
    lifetime     = ProtoField.uint32("rhcp.validity.lifetime", "Lifetime (s)"),
    formal       = ProtoField.string("rhcp.formal_address", "Formal address"),
    ack_sequence = ProtoField.uint64("rhcp.ack_sequence", "Acknowledged sequence"),
    hmac         = ProtoField.none("rhcp.hmac", "HMAC-SHA256"),
}
rhcp.fields = rf

local rhcp_port = 6655
rhcp.prefs.port = Pref.uint("UDP port", rhcp_port, "UDP port of RHCP (the profile's `port`)")

local ea_bad_tlv = ProtoExpert.new("rhcp.bad_tlv", "TLV truncated or of a wrong length", expert.group.MALFORMED, expert.severity.ERROR)
local ea_length = ProtoExpert.new("rhcp.bad_length", "Length field differs from the datagram", expert.group.MALFORMED, expert.severity.ERROR)
rhcp.experts = { ea_bad_tlv, ea_length }

-- prefix_text renders an address TLV value (address bytes, then the length).
local function prefix_text(r)
    local n = r:len()
    if n == 5 then
        return tostring(r(0, 4):ipv4()) .. "/" .. r(4, 1):uint()
    elseif n == 17 then
        return tostring(r(0, 16):ipv6()) .. "/" .. r(16, 1):uint()
    end
    return nil
end

local function add_addr(tree, f4, f6, r)
    if r:len() == 4 then
        return tree:add(f4, r)
    elseif r:len() == 16 then
        return tree:add(f6, r)
    end
    return tree:add_proto_expert_info(ea_bad_tlv)
end

local function rhcp_tlv(tree, t, v, info)
    local n = v:len()
    if t == 1 then
        local id = v:string()
        tree:add(rf.client_id, v)
        info.client = id
    elseif t == 2 then
        if n == 5 then tree:add(rf.address, v(0, 4)) elseif n == 17 then tree:add(rf.address6, v(0, 16)) end
        if n == 5 or n == 17 then
            tree:add(rf.prefix_len, v(n - 1, 1))
            info.address = prefix_text(v)
        else
            tree:add_proto_expert_info(ea_bad_tlv)
        end
    elseif t == 3 then
        add_addr(tree, rf.gateway, rf.gateway6, v)
    elseif t == 4 then
        local text
        if n == 5 or n == 17 then
            text = prefix_text(v)
        elseif n == 9 then
            text = prefix_text(v(0, 5)) .. " via " .. tostring(v(5, 4):ipv4())
        elseif n == 33 then
            text = prefix_text(v(0, 17)) .. " via " .. tostring(v(17, 16):ipv6())
        end
        if text then tree:add(rf.route, v, text) else tree:add_proto_expert_info(ea_bad_tlv) end
    elseif t == 5 then
        add_addr(tree, rf.server, rf.server6, v)
    elseif t == 6 then
        add_addr(tree, rf.dhcp_server, rf.dhcp_server6, v)
    elseif t == 7 and n == 8 then
        tree:add(rf.sequence, v)
    elseif t == 8 and n == 12 then
        local secs = v(0, 8):uint64():tonumber()
        tree:add(rf.issued, v(0, 8), NSTime.new(secs, 0))
        tree:add(rf.lifetime, v(8, 4))
    elseif t == 9 then
        local text = prefix_text(v)
        if text then tree:add(rf.formal, v, text) else tree:add_proto_expert_info(ea_bad_tlv) end
    elseif t == 10 and n == 8 then
        tree:add(rf.ack_sequence, v)
    elseif tlv_names[t] then
        tree:add_proto_expert_info(ea_bad_tlv)
    end
end

-- looks_like_rhcp: magic "RH", version 1, a known type and a Length that
-- matches the datagram (docs/protocols/rhcp.md "Message").
local function looks_like_rhcp(tvb)
    return tvb:len() >= 40 and tvb(0, 2):string() == "RH" and tvb(2, 1):uint() == 1
        and rhcp_types[tvb(3, 1):uint()] ~= nil and tvb(4, 2):uint() == tvb:len()
end

function rhcp.dissector(tvb, pinfo, root)
    local len = tvb:len()
    if len < 40 or tvb(0, 2):string() ~= "RH" then
        return 0
    end
    pinfo.cols.protocol = "RHCP"
    local tree = root:add(rhcp, tvb())
    tree:add(rf.magic, tvb(0, 2))
    tree:add(rf.version, tvb(2, 1))
    tree:add(rf.type, tvb(3, 1))
    local lf = tree:add(rf.length, tvb(4, 2))
    if tvb(4, 2):uint() ~= len then lf:add_proto_expert_info(ea_length) end
    tree:add(rf.reserved, tvb(6, 2))
    local info = {}
    local off, stop = 8, len - 32
    while off < stop do
        if off + 2 > stop or off + 2 + tvb(off + 1, 1):uint() > stop then
            tree:add_proto_expert_info(ea_bad_tlv)
            break
        end
        local t, n = tvb(off, 1):uint(), tvb(off + 1, 1):uint()
        local sub = tree:add(rf.tlv, tvb(off, 2 + n))
        sub:set_text(tlv_names[t] or ("TLV " .. t))
        sub:add(rf.tlv_type, tvb(off, 1))
        sub:add(rf.tlv_length, tvb(off + 1, 1))
        if n > 0 then
            rhcp_tlv(sub, t, tvb(off + 2, n), info)
        end
        off = off + 2 + n
    end
    tree:add(rf.hmac, tvb(len - 32, 32)):append_text(" (32 bytes, not shown)")
    local text = rhcp_types[tvb(3, 1):uint()] or ("type " .. tvb(3, 1):uint())
    if info.client then text = text .. " client " .. info.client end
    if info.address then text = text .. " address " .. info.address end
    pinfo.cols.info = "RHCP " .. text
    tree:append_text(", " .. text)
    return len
end

local function rhcp_heuristic(tvb, pinfo, root)
    if not looks_like_rhcp(tvb) then return false end
    rhcp.dissector(tvb, pinfo, root)
    return true
end

---------------------------------------------------------------------------
-- TN tunnel
---------------------------------------------------------------------------

local tn = Proto("tntunnel", "fieldcon TN tunnel")

local tn_types = { [1] = "establishment request", [2] = "establishment response", [3] = "cookie reply",
                   [4] = "data", [5] = "heartbeat", [6] = "close" }
-- Exact sizes of the handshake messages (docs/protocols/tunnel.md).
local tn_sizes = { [1] = 148, [2] = 108, [3] = 64 }

local tf = {
    type           = ProtoField.uint8("tntunnel.type", "Type", base.DEC, tn_types),
    version        = ProtoField.uint8("tntunnel.version", "Version"),
    reserved       = ProtoField.uint16("tntunnel.reserved", "Reserved", base.HEX),
    sender_index   = ProtoField.uint32("tntunnel.sender_index", "Sender index"),
    receiver_index = ProtoField.uint32("tntunnel.receiver_index", "Receiver index"),
    tunnel_index   = ProtoField.uint32("tntunnel.index", "Tunnel index"),
    counter        = ProtoField.uint64("tntunnel.counter", "Counter"),
    sealed         = ProtoField.uint32("tntunnel.sealed_len", "Encrypted bytes"),
}
tn.fields = tf
tn.prefs.port = Pref.uint("UDP port", 0, "UDP port of the tunnel server (0: recognise by header only)")

local function looks_like_tunnel(tvb, on_port)
    local len = tvb:len()
    if len < 4 or tvb(1, 1):uint() ~= 1 or tvb(2, 2):uint() ~= 0 then return false end
    local t = tvb(0, 1):uint()
    if tn_sizes[t] then return len == tn_sizes[t] end
    return on_port and t >= 4 and t <= 6 and len >= 32
end

function tn.dissector(tvb, pinfo, root)
    local len = tvb:len()
    if len < 8 then return 0 end
    local t = tvb(0, 1):uint()
    pinfo.cols.protocol = "TNTUNNEL"
    local tree = root:add(tn, tvb())
    tree:add(tf.type, tvb(0, 1))
    tree:add(tf.version, tvb(1, 1))
    tree:add(tf.reserved, tvb(2, 2))
    local index
    if t == 1 then
        tree:add(tf.sender_index, tvb(4, 4))
        tree:add(tf.sealed, tvb(8, len - 40), len - 40):append_text(" (Noise IK message 1)")
        index = tvb(4, 4):uint()
    elseif t == 2 then
        tree:add(tf.sender_index, tvb(4, 4))
        tree:add(tf.receiver_index, tvb(8, 4))
        index = tvb(4, 4):uint()
        tree:add(tf.tunnel_index, tvb(4, 4)):set_generated()
        tree:add(tf.sealed, tvb(12, len - 44), len - 44):append_text(" (Noise IK message 2)")
    elseif t == 3 then
        tree:add(tf.receiver_index, tvb(4, 4))
        index = tvb(4, 4):uint()
        tree:add(tf.sealed, tvb(32, len - 32), len - 32):append_text(" (cookie)")
    elseif len >= 16 then
        tree:add(tf.receiver_index, tvb(4, 4))
        index = tvb(4, 4):uint()
        tree:add(tf.tunnel_index, tvb(4, 4)):set_generated()
        tree:add(tf.counter, tvb(8, 8))
        tree:add(tf.sealed, tvb(16, len - 16), len - 16)
    end
    local text = (tn_types[t] or ("type " .. t))
    if index then text = text .. " index " .. index end
    pinfo.cols.info = "TN tunnel " .. text
    tree:append_text(", " .. text)
    return len
end

local function tn_heuristic(tvb, pinfo, root)
    if not looks_like_tunnel(tvb, tn.prefs.port ~= 0 and (pinfo.src_port == tn.prefs.port or pinfo.dst_port == tn.prefs.port)) then
        return false
    end
    tn.dissector(tvb, pinfo, root)
    return true
end

---------------------------------------------------------------------------
-- Registration
---------------------------------------------------------------------------

local udp_table = DissectorTable.get("udp.port")
udp_table:add(rhcp_port, rhcp)
rhcp:register_heuristic("udp", rhcp_heuristic)
tn:register_heuristic("udp", tn_heuristic)

local tn_port = 0
function tn.prefs_changed()
    if tn_port ~= 0 then udp_table:remove(tn_port, tn) end
    tn_port = tn.prefs.port
    if tn_port ~= 0 then udp_table:add(tn_port, tn) end
end

function rhcp.prefs_changed()
    if rhcp.prefs.port ~= rhcp_port then
        udp_table:remove(rhcp_port, rhcp)
        rhcp_port = rhcp.prefs.port
        udp_table:add(rhcp_port, rhcp)
    end
end
