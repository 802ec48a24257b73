Feature: Dependent application assets
  GET /v1/dependent-apps/:appId/assets/:commit serves the /assets folder of
  the release's image as a tar, byte for byte.

  Background:
    Given the supervisor is running

  @APP-ASSET-1 @contract
  Scenario: The assets of the current release are a tar of /assets with relative names
    Given a dependent app "A" with a release "R1" holding files:
      | path             | content          |
      | firmware.bin     | random 70000     |
      | sub/x.hex        | :10000000AB      |
      | sub/deeper/y.txt | nested           |
    When the supervisor has downloaded release "R1" of "A"
    And the gateway app calls GET "/v1/dependent-apps/{app A}/assets/{commit R1}"
    Then the answer is 200
    And the answer's Content-Type is "application/x-tar"
    And the answer is a tar holding exactly:
      | path             | content          |
      | firmware.bin     | random 70000     |
      | sub/x.hex        | :10000000AB      |
      | sub/deeper/y.txt | nested           |

  @APP-ASSET-2 @contract
  Scenario: Unknown apps, garbage commits and older commits are not found
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"
    When a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    And the supervisor has downloaded release "R2" of "A"
    Then the assets of "A" at release "R2" are exactly:
      | path         | content |
      | firmware.bin | v2      |
    And GET "/v1/dependent-apps/{app A}/assets/{commit R1}" answers 404 "Not found"
    And GET "/v1/dependent-apps/{app A}/assets/0000000000000000000000000000000000000000" answers 404 "Not found"
    And GET "/v1/dependent-apps/{app A}/assets/not-a-commit" answers 404 "Not found"
    And GET "/v1/dependent-apps/987654321/assets/{commit R2}" answers 404 "Not found"

  @APP-ASSET-2 @contract
  Scenario: A release that is not downloaded yet is not found
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"
    And the registry is unreachable
    When a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    And the supervisor has fetched its target twice more
    Then GET "/v1/dependent-apps/{app A}/assets/{commit R2}" answers 404 "Not found"
    And the assets of "A" at release "R1" are exactly:
      | path         | content |
      | firmware.bin | v1      |

  @APP-ASSET-3 @contract
  Scenario: Whiteouts delete files and later layers win
    Given a dependent app "A" with a release "R1" built from layers:
      | layer | path                       | content |
      | 1     | /assets/firmware.bin       | old     |
      | 1     | /assets/removed.txt        | gone    |
      | 1     | /assets/dir/a.txt          | a       |
      | 1     | /assets/dir/b.txt          | b       |
      | 1     | /assets/olddir/c.txt       | c       |
      | 2     | /assets/firmware.bin       | new     |
      | 2     | /assets/.wh.removed.txt    |         |
      | 2     | /assets/dir/.wh.a.txt      |         |
      | 2     | /assets/.wh.olddir         |         |
      | 3     | /assets/dir/b.txt          | b3      |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are exactly:
      | path         | content |
      | firmware.bin | new     |
      | dir/b.txt    | b3      |

  @APP-ASSET-3 @contract
  Scenario: An opaque whiteout hides everything below it from earlier layers
    Given a dependent app "A" with a release "R1" built from layers:
      | layer | path                     | content |
      | 1     | /assets/keep.txt         | keep    |
      | 1     | /assets/cfg/old.txt      | old     |
      | 2     | /assets/cfg/.wh..wh..opq |         |
      | 2     | /assets/cfg/new.txt      | new     |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are exactly:
      | path        | content |
      | keep.txt    | keep    |
      | cfg/new.txt | new     |

  @APP-ASSET-4 @reference
  Scenario: Hidden files are included, files outside /assets are not
    Given a dependent app "A" with a release "R1" built from layers:
      | layer | path                   | content |
      | 1     | /assets/.hidden        | dot     |
      | 1     | /assets/.config/x.json | {}      |
      | 1     | /assets/visible.bin    | v       |
      | 1     | /etc/hostname          | host    |
      | 1     | /assetsextra/y.txt     | nope    |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are exactly:
      | path          | content |
      | .hidden       | dot     |
      | .config/x.json | {}     |
      | visible.bin   | v       |

  @APP-ASSET-4 @reference
  Scenario: Entries whose path escapes /assets are never emitted
    Given a dependent app "A" with a release "R1" built from layers:
      | layer | path                        | content |
      | 1     | /assets/ok.txt              | ok      |
      | 1     | /assets/../etc/passwd       | root    |
      | 1     | /assets/sub/../../escape    | out     |
      | 1     | /assets/sub/../inside.txt   | in      |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are exactly:
      | path       | content |
      | ok.txt     | ok      |
      | inside.txt | in      |

  @APP-ASSET-4 @reference
  Scenario: An image without /assets gives an empty, valid tar
    Given a dependent app "A" with a release "R1" built from layers:
      | layer | path          | content |
      | 1     | /etc/hostname | host    |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are exactly:
      | path | content |

  @APP-ASSET-4 @reference
  Scenario: ETag, If-None-Match and Range
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content      |
      | firmware.bin | random 50000 |
    And the supervisor has downloaded release "R1" of "A"
    When the gateway app calls GET "/v1/dependent-apps/{app A}/assets/{commit R1}"
    Then the answer is 200
    And the answer has an ETag
    When the gateway app asks for the same assets again with If-None-Match set to that ETag
    Then the answer is 304
    When the gateway app asks for bytes 100-1123 of the same assets
    Then the answer is 206 holding exactly those bytes of the full tar

  @APP-ASSET-4 @reference
  Scenario: Concurrent first requests all get the same tar
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content       |
      | firmware.bin | random 200000 |
      | b.bin        | random 1000   |
    And the supervisor has downloaded release "R1" of "A"
    When the gateway app asks for the assets of "A" at release "R1" 8 times at once
    Then every answer is 200 with the same tar holding exactly:
      | path         | content       |
      | firmware.bin | random 200000 |
      | b.bin        | random 1000   |

  @APP-ASSET-3 @contract
  Scenario: A whiteout and an opaque marker directly in /assets
    Given a dependent app "A" with a release "R1" built from layers:
      | layer | path                 | content |
      | 1     | /assets/old.bin      | old     |
      | 1     | /assets/dir/x.txt    | x       |
      | 2     | /assets/.wh..wh..opq |         |
      | 2     | /assets/new.bin      | new     |
      | 2     | /assets/gone.bin     | gone    |
      | 3     | /assets/.wh.gone.bin |         |
      | 3     | /assets/top.bin      | top     |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are exactly:
      | path    | content |
      | new.bin | new     |
      | top.bin | top     |

  @APP-ASSET-5 @reference
  Scenario: A hard link to a symbolic link cannot lead out of the extraction folder
    The symlink is harmless where it stands; a hard link to it extracts as
    the same symlink at the hard link's place, where it leads out.
    Given a dependent app "A" with a release "R1" built from layers of entries:
      | layer | path                             | type     | mode | content                            |
      | 1     | /assets/firmware.bin             | file     |      | fw                                 |
      | 1     | /assets/a/b/c/d/e/f/g/h/l        | symlink  |      | ../../../../../../../../etc/passwd |
      | 1     | /assets/evil                     | hardlink |      | assets/a/b/c/d/e/f/g/h/l           |
      | 1     | /assets/x/y/s                    | symlink  |      | ../..                              |
      | 1     | /assets/esc                      | hardlink |      | assets/x/y/s                       |
      | 1     | /assets/esc/pwned                | file     |      | written through esc                |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are safe to extract anywhere
    And the assets of "A" at release "R1" are exactly:
      | path         | content |
      | firmware.bin | fw      |

  @APP-ASSET-5 @reference
  Scenario: Links are judged where they lead after extraction, through the tar's other links
    Given a dependent app "A" with a release "R1" built from layers of entries:
      | layer | path                      | type    | mode | content                 |
      | 1     | /assets/firmware.bin      | file    |      | fw                      |
      | 1     | /assets/a/b/c/top         | symlink |      | ../../..                |
      | 1     | /assets/out               | symlink |      | a/b/c/top/..            |
      | 1     | /assets/sub/fw            | symlink |      | /assets/firmware.bin    |
      | 1     | /assets/etc               | symlink |      | /etc                    |
      | 1     | /assets/parent            | symlink |      | /assets/..              |
      | 2     | /assets/up                | symlink |      | ..                      |
      | 2     | /assets/up/pwned          | file    |      | written through up      |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are safe to extract anywhere
    And the assets of "A" at release "R1" are exactly:
      | path         | content |
      | firmware.bin | fw      |

  @APP-ASSET-5 @reference
  Scenario: Device nodes and FIFOs are dropped, setuid, setgid and sticky bits cleared
    Given a dependent app "A" with a release "R1" built from layers of entries:
      | layer | path              | type  | mode | content |
      | 1     | /assets/tool      | file  | 4755 | t       |
      | 1     | /assets/group     | file  | 2755 | g       |
      | 1     | /assets/tmp       | dir   | 1777 |         |
      | 1     | /assets/tmp/x     | file  |      | x       |
      | 1     | /assets/null      | char  |      |         |
      | 1     | /assets/disk      | block |      |         |
      | 1     | /assets/pipe      | fifo  |      |         |
    When the supervisor has downloaded release "R1" of "A"
    Then the assets of "A" at release "R1" are safe to extract anywhere
    And the assets of "A" at release "R1" are exactly:
      | path  | content |
      | tool  | t       |
      | group | g       |
      | tmp/x | x       |
