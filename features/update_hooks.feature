Feature: Update hooks
  When a device's target differs from what the gateway app last reported, the
  supervisor tells the gateway app with PUT <base><uuid>, and only once the
  assets of the target commit can be downloaded.

  Background:
    Given the gateway app fetches the assets of every update hook it receives
    And the supervisor is running

  @HOOK-ADDR-1 @HOOK-UPD-1 @contract
  Scenario: The update hook carries the device's target
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And app "A" has config variable "RESIN_SUPERVISOR_DELTA" set to "1"
    And a device "D" of "A" provisioned through the supervisor
    And device "D" has environment variable "LED" set to "on"
    Then "D" eventually receives an update hook with body:
      """
      {"appId": {app A}, "commit": "{commit R1}", "environment": {"LED": "on"}, "config": {"RESIN_SUPERVISOR_DELTA": "1"}}
      """
    And the first hook of the newest target reached "D" within the contract's bound
    And every hook went to the gateway app's address for its device

  @HOOK-ADDR-1 @contract
  Scenario: The uuid is appended to any base address
    Given the hook address is "/gateway/hooks/" on the gateway app
    And the supervisor is restarted with the new hook address
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    Then "D" eventually receives an update hook for release "R1"
    And every hook went to the gateway app's address for its device

  @HOOK-UPD-2 @contract
  Scenario: The update hook comes only once the assets can be downloaded
    Given the registry serves blobs slowly
    And a dependent app "A" with a release "R1" holding files:
      | path         | content       |
      | firmware.bin | random 300000 |
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives an update hook for release "R1"
    Then every update hook could fetch its assets at once

  @HOOK-UPD-2 @contract
  Scenario: No update hook while the registry cannot deliver the image
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the registry is unreachable
    When a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    Then no update hook for release "R2" reaches "D" while the contract would have sent it
    When the registry is reachable again
    Then "D" eventually receives an update hook for release "R2"
    And every update hook could fetch its assets at once

  @HOOK-200 @contract
  Scenario: A 200 acknowledges the target even if the gateway never reports it
    Given the gateway app answers update hooks for "D" with 200
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives an update hook for release "R1"
    Then no further update hook reaches "D" while the contract would have repeated it

  @HOOK-200 @HOOK-UPD-1 @contract
  Scenario: A new target after an acknowledged one gets a new hook
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    When device "D" has environment variable "LED" set to "blink"
    Then "D" eventually receives an update hook with body:
      """
      {"appId": {app A}, "commit": "{commit R1}", "environment": {"LED": "blink"}, "config": {}}
      """
    And the first hook of the newest target reached "D" within the contract's bound
    When a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    Then "D" eventually receives an update hook with body:
      """
      {"appId": {app A}, "commit": "{commit R2}", "environment": {"LED": "blink"}, "config": {}}
      """
    And the first hook of the newest target reached "D" within the contract's bound
    And every update hook could fetch its assets at once

  @HOOK-UPD-1 @contract
  Scenario: No update hook when the gateway already reports the target
    Given the gateway app answers update hooks for "D" with 202
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the gateway app reports the target of "D"
    When device "D" has environment variable "LED" set to "on"
    And "D" eventually receives an update hook with environment {"LED": "on"}
    And the gateway app reports the target of "D"
    Then no further update hook reaches "D" while the contract would have repeated it

  @HOOK-UPD-1 @contract
  Scenario: Every managed device gets its own hook
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D1" of "A" provisioned through the supervisor
    And a device "D2" of "A" provisioned through the supervisor
    And a device "E" of "A" created in the cloud for this gateway
    Then "D1" eventually receives an update hook for release "R1"
    And "D2" eventually receives an update hook for release "R1"
    And "E" eventually receives an update hook for release "R1"

  @HOOK-UPD-1 @contract
  Scenario: A change of config alone is a new target
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    When app "A" has config variable "RATE" set to "9600"
    Then "D" eventually receives an update hook with config {"RATE": "9600"}
    And the first hook of the newest target reached "D" within the contract's bound
