/**
 * ICE candidates and SDP, as a peer link filters them (the Python side's
 * `iavicenne.ice` does the same for aiortc): a candidate's transport and address, the
 * loopback test of `loopback` links, and an SDP with only the candidates kept.
 */

/** @param {string} candidate an SDP candidate line's value ("candidate:... <address> <port> typ ...") */
export function candidateAddress(candidate) {
  const bits = candidate.replace(/^a=/, "").replace(/^candidate:/, "").trim().split(/\s+/);
  return { transport: (bits[2] ?? "").toLowerCase(), address: bits[4] ?? "" };
}

/** @param {string} candidate */
export function isLoopbackCandidate(candidate) {
  const { transport, address } = candidateAddress(candidate);
  return transport === "udp" && (address === "::1" || address.startsWith("127."));
}

/**
 * The SDP with only the candidates `keep` accepts, and `a=end-of-candidates` when `complete`.
 * @param {string} sdp
 * @param {(candidate: string) => boolean} keep
 * @param {boolean} complete
 */
export function filterSdp(sdp, keep, complete) {
  const lines = sdp.split(/\r\n/).filter((line) => !line.startsWith("a=candidate:") || keep(line.slice(2)));
  if (complete && !lines.includes("a=end-of-candidates")) {
    // after the last line of the (single) media section; the SDP ends with an empty line
    const end = lines[lines.length - 1] === "" ? lines.length - 1 : lines.length;
    lines.splice(end, 0, "a=end-of-candidates");
  }
  return lines.join("\r\n");
}
