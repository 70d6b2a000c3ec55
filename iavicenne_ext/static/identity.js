/**
 * Who the other end of a peer link is: the member a peer id belongs to (`userOfPeer`),
 * whether two verified identities are one person (`sameIdentity`), and `presenceCheck`, a
 * `PeerNetwork`'s `verifyIdentity` that takes a peer only from the identity that holds its
 * member name in the room's presence. As the Python client: `iavicenne.link.same_identity`,
 * `iavicenne.connections.user_of`, and the room's `verify_peer`.
 */

import { PeerIdentityMismatch } from "./errors.js";

/**
 * Whether two public identities (as the server verified them) are one person: the same
 * `username`, the one thing nobody else can have (a name or a display name can).
 * @param {Record<string, any> | null | undefined} a
 * @param {Record<string, any> | null | undefined} b
 */
export function sameIdentity(a, b) {
  const username = a?.username;
  return typeof username === "string" && username !== "" && username === b?.username;
}

const TAGGED = /^(.+)#[0-9a-f]{6}$/;

/**
 * The member (user_id) a peer id belongs to: a kernel's `"bob#3f2a1c"` is bob's, a
 * page's `"bob"` too (the Python client's convention, `iavicenne.connections`).
 * @param {string} peerId
 */
export function userOfPeer(peerId) {
  return TAGGED.exec(peerId)?.[1] ?? peerId;
}

/**
 * A `verifyIdentity` for a `PeerNetwork` of the signaling room beside `room` (a joined
 * `Room` of client.js): a peer is accepted only when the server says it is held by the
 * identity that holds its member name in the room's presence.
 * @param {{ name: string, members: Map<string, Record<string, any>> }} room
 * @param {{ userOf?: (peerId: string) => string }} [options]
 * @returns {(peerId: string, identity: Record<string, any> | null) => void}
 */
export function presenceCheck(room, { userOf = userOfPeer } = {}) {
  return (peerId, identity) => {
    const user = userOf(peerId);
    const expected = room.members.get(user)?.identity ?? null;
    const quoted = JSON.stringify(peerId);
    if (!expected || !Object.keys(expected).length) {
      throw new PeerIdentityMismatch(`${quoted} would be ${JSON.stringify(user)}'s, but nobody holds ${JSON.stringify(user)} in room ${JSON.stringify(room.name)}: link refused`, { found: identity });
    }
    if (!identity) {
      throw new PeerIdentityMismatch(`the server did not say who holds ${quoted} (a server without verified signaling?): link refused`, { expected });
    }
    if (!sameIdentity(expected, identity)) {
      throw new PeerIdentityMismatch(
        `${quoted} is held by ${JSON.stringify(identity.username)}, but ${JSON.stringify(user)} in room ${JSON.stringify(room.name)} is ${JSON.stringify(expected.username)}: link refused (someone took a name that is not theirs)`,
        { expected, found: identity },
      );
    }
  };
}
