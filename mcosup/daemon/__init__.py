"""The node daemon (`mcosup daemon`, contract section 6): one per node, the MCO's "MCD".

Layers, from pure to I/O:

- Pure, no I/O: :mod:`~mcosup.model.hostconfig` (shared with the builder) reads a rendered config;
  :mod:`~mcosup.daemon.hostfacts` holds what the host reports; :mod:`~mcosup.daemon.plan` (the config,
  sections 6.1-6.3) and :mod:`~mcosup.daemon.certplan` (certificates, 6.4) decide, and return an ordered
  list of idempotent :mod:`~mcosup.daemon.steps`.
- :mod:`~mcosup.daemon.host` is the only code that touches the host (files under the root, ``rpm-ostree``
  / ``bootc``, ``systemctl``, ``update-ca-trust``, reboot).
- :mod:`~mcosup.daemon.journal` persists intent on the host; :mod:`~mcosup.daemon.executor` runs a
  journalled plan step by step.
- :mod:`~mcosup.daemon.agent` is the level-triggered loop behind a small ``Cluster`` seam;
  :mod:`~mcosup.daemon.cluster` implements the seam with the Kubernetes client; ``command`` wires it up.
  Nothing here imports :mod:`mcosup.sim`.

Choices where the contract is silent (what an MCO administrator would expect):

- Legacy mode reboots when a file, unit, kernel argument or the OS image changes; ssh keys, the
  password hash and certificates never cause a reboot.
- Node disruption policy (contract 12.2, :mod:`mcosup.model.disruption`): a change of files, units or
  ssh keys that ConfigMap ``node-disruption-policy`` covers without ``Reboot`` (kernel arguments, kernel
  type, extensions, FIPS and ``osImageURL`` unchanged) is applied live. Legacy mode writes it as usual;
  layered mode stages the new image (``rpm-ostree rebase`` without the reboot) and writes only the
  changed /etc files and units, root-owned like the image's copies so that ostree's /etc merge at the
  next boot keeps nothing of them. Then the actions run in order, each once (``Drain`` is the
  supervisor's, ``None`` nothing; a ``daemon-reload`` the unit writes already ran counts), and the node
  reports ``mc/lastAppliedWithoutReboot`` (``<rendered>: <actions>``, kept until the next live apply).
  The staged image boots at whatever reboot comes next; the daemon then verifies it booted it, and
  when the host comes up on anything else it stages the image again and reboots into it. No ConfigMap
  means the MCO's default policies; an invalid one is logged and every change reboots. A first config
  or a change of mode always reboots; an ssh-key-only change never does (a ``Reboot`` in ``sshkey`` is
  not honoured alone).
- A reboot is proven by a new boot id (``/proc/sys/kernel/random/boot_id``), recorded before asking
  for it, so a crash around the reboot neither skips it nor reboots twice. The process then exits with
  status 75 and the kubelet starts it again.
- ``core``'s ssh keys go to ``/home/core/.ssh/authorized_keys`` (mode 0600, owner core); the password
  hash is set in ``/etc/shadow`` as ``usermod -p`` would; a config that drops the hash locks it (``*``).
- Kernel arguments follow the MCO's diff: arguments the previous config added and the new one lacks are
  deleted, new ones appended, arguments nobody configured are left alone. On bootc hosts they are
  changed with ``rpm-ostree kargs`` too (bootc only takes kernel arguments from the image).
- Certificates: a missing ``node-certificates`` ConfigMap changes nothing; a dropped
  ``user-ca-bundle.crt`` is removed (and the trust store rebuilt); a dropped ``kubelet-ca.crt`` is left
  in place (removing it would cut the kubelet off); ``/etc/docker/certs.d`` is owned by the daemon:
  every directory there that the ConfigMap does not list is removed.
- The health gate (contract 12.3) covers plans that boot a new layered image: Ready and the host's
  ``boot-complete.target`` (when it has one) within the pool's ``health-check-seconds``, else
  ``rpm-ostree rollback``/``bootc rollback``, a reboot, and ``RolledBack: ...`` until the target
  changes. A legacy config's reboot is not gated (its files cannot be rolled back with a deployment).
  A live apply (12.2) boots nothing, so it is not gated. The rollback boots the deployment booted
  before the bad image; when the node had an image applied live (staged, not booted), the bad image's
  rebase replaced that pending deployment, so the daemon stages it again, without a reboot. The node
  then has what its ``currentImage`` says, as the live apply left it: its next reboot boots that image
  and a resume needs no reboot. When the bad image was a legacy node's first, leaving legacy mode had
  given /etc back to the image before the reboot (below), and the rollback boots the stock deployment
  with its /etc as it was left (a rollback makes no new deployment, so no /etc merge): the daemon writes
  the legacy config's files and units again, reloads systemd and sets their enablement again, without a
  reboot (the units start at the next boot, as after a revert). Either way the steps are planned once
  after the rollback's reboot and journalled (``restore``), so a crash or a failure resumes where it
  stopped, while the node goes on reporting the rollback.
- After a failure the node stays ``Degraded`` with the reason while the daemon retries (capped
  exponential backoff), rather than flapping through ``Working`` on each attempt. An API server that
  throttles, fails with a 5xx or cannot be reached when the daemon writes its report is not a failure of
  the node: the pass is retried quietly (the same backoff, or the server's ``Retry-After``).
- Fields the daemon does not act on (``extensions``, ``kernelType``, ``fips``) are ignored; the
  webhook and the renderer own their validation.
- State on the host: ``/etc/mco/mcosup-daemon-state.json`` (what was applied, the plan in progress);
  during a revert the target config also sits in ``/etc/mco/machineconfig-revert.json`` (contract 6.3);
  after a rollback the rollback record also sits in ``/var/lib/mcosup/rolled-back.json`` (below).

ostree's three-way /etc merge. On an image-based host every new deployment (a rebase, a revert, a
kernel-argument change) starts from the new image's default /etc (its ``/usr/etc``), and ostree carries
over each /etc file that differs from the booted deployment's default — content, mode or owner —
added or deleted ones included (it runs at shutdown for a staged deployment, so what the daemon writes
before its reboot, the journal included, is carried). What the daemon does for each case it meets
(table-tested on a real sysroot in ``tests/ostree/test_etc_merge.py``):

- **Legacy-written, the image does not carry it** (a config dropped the file at the opt-in): carried
  over, it would stay on the layered node. **Both** (legacy wrote it, the image carries it): carried
  over, the legacy copy would win over the image's for good — a stale content when the config changed
  around the opt-in, or only another owner (the builder writes files as root, legacy mode as the
  config's user), after which no image change to that file would ever reach the node. So when leaving
  legacy mode the daemon hands /etc back: once the image is staged and just before the reboot, every
  /etc path legacy mode wrote goes back to the booted default (``/usr/etc/...``), or is removed when
  there is none; the merge then sees nothing changed and the image's copy (or its absence) wins. The
  node is drained then; a change of target before the reboot re-applies the files in legacy mode.
- **Image-carried only** (not in the legacy config): the new default, as built. After an opt-out it
  goes with the image unless changed on the node, so the stock OS comes back without it; the daemon then
  writes every file and unit of the config again (contract 6.3).
- **Neither**: the stock default, through every deployment.
- **Written by the daemon in every mode** (certificates, ``/etc/shadow``'s hash, the journal, the revert
  file): local changes, carried over by design; ssh keys live in ``/var/home``, outside the merge.
- Files under ``/usr`` are the deployment's (read-only on a real host): legacy mode cannot deliver them
  across a deployment; only an image can.
- **The journal after a rollback**: it lives in /etc too, so the deployment a rollback boots comes up
  with the journal it had at its shutdown, before the bad image booted (the plan at its reboot, the gate
  open), as ``bootc rollback``'s manual warns. The rollback record, with what the node runs again, is
  therefore also kept in /var (``/var/lib/mcosup/rolled-back.json``, shared by every deployment); a
  journal that lacks it is the left-behind one, and its plan and gate are dropped. The fake host has
  one /etc for every deployment; a test puts the left-behind journal back to show it.
- Not handled yet: unit enablement. ``systemctl enable`` links under /etc are local additions too; a
  layered config that disables a unit legacy mode enabled would find the link still there.
"""
