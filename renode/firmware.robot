*** Comments ***
Renode test of the tinymlaas STM32F4 firmware (the binary QEMU tests as netduinoplus2).
Run from the repository root after `make -C firmware BOARD=stm32f4`:
    renode-test renode/firmware.robot
CI runs the same checks under QEMU instead (tests/firmware/): Renode has no offline package to install there.
Under QEMU the firmware uses its RAM model store (QEMU's STM32 flash is ROM); here, as on a board, the flash store,
which CI tests on the host against a register-level flash model (tests/firmware/test_flash_store.py).

*** Settings ***
Library           Process
Suite Setup       Setup
Suite Teardown    Teardown
Test Setup        Reset Emulation
Test Teardown     Test Teardown
Resource          ${RENODEKEYWORDS}

*** Variables ***
${REPO}           ${CURDIR}/..
${ELF}            @${CURDIR}/../build/firmware/stm32f4/tinymlaas.elf
${PORT}           3456

*** Keywords ***
Create Machine
    Execute Command           $bin=${ELF}
    Execute Command           $port=${PORT}
    Execute Command           include @${CURDIR}/stm32f4.resc
    Create Terminal Tester    sysbus.usart2    timeout=10

*** Test Cases ***
Should Boot And Report Capabilities
    Create Machine
    Start Emulation
    # the boot frame carries the capability text; it has no line ending, so match it as a prompt
    Wait For Prompt On Uart    tinymlaas-fw version=
    Wait For Prompt On Uart    abi=1
    Wait For Prompt On Uart    model=none

Should Install KWS Over The UART And Match TFLite Micro
    Create Machine
    Start Emulation
    Wait For Prompt On Uart    model=none
    ${result}=    Run Process    python3    -m    tinymlaas.devices.renode    check    --port    ${PORT}
    ...    --model    kws    cwd=${REPO}    timeout=600
    Log    ${result.stdout}
    Should Be Equal As Integers    ${result.rc}    0    ${result.stderr}

Should Use The Flash Store
    Create Machine
    Start Emulation
    # Renode models the STM32F4 flash interface, so the firmware's probe finds programmable flash
    Wait For Prompt On Uart    storage=flash

Should Install Every MLPerf Model Into Flash And Match TFLite Micro
    # VWW (250 KB), IC and AD do not fit the RAM store QEMU's ROM flash forces; the flash store holds all five
    Create Machine
    Start Emulation
    Wait For Prompt On Uart    storage=flash
    FOR    ${model}    IN    kws    vww    ic    ad    sww
        ${result}=    Run Process    python3    -m    tinymlaas.devices.renode    check    --port    ${PORT}
        ...    --model    ${model}    --storage    flash    cwd=${REPO}    timeout=1800
        Log    ${result.stdout}
        Should Be Equal As Integers    ${result.rc}    0    ${model}: ${result.stderr}
    END

Should Keep The Model In Flash Across A Reset
    Create Machine
    Start Emulation
    Wait For Prompt On Uart    storage=flash
    ${result}=    Run Process    python3    -m    tinymlaas.devices.renode    check    --port    ${PORT}
    ...    --model    ic    --storage    flash    cwd=${REPO}    timeout=1800
    Should Be Equal As Integers    ${result.rc}    0    ${result.stderr}
    # the reset macro reloads the ELF (sectors 0-5); Renode keeps flash contents across a reset
    Execute Command    machine Reset
    Wait For Prompt On Uart    storage=flash
    ${result}=    Run Process    python3    -m    tinymlaas.devices.renode    check    --port    ${PORT}
    ...    --model    ic    --installed    cwd=${REPO}    timeout=600
    Should Be Equal As Integers    ${result.rc}    0    ${result.stderr}

Should Refuse A Blob For Another ABI And Keep Running
    Create Machine
    Start Emulation
    Wait For Prompt On Uart    model=none
    ${result}=    Run Process    python3    -m    tinymlaas.devices.renode    check    --port    ${PORT}
    ...    --model    kws    --wrong-abi    cwd=${REPO}    timeout=600
    Should Be Equal As Integers    ${result.rc}    0    ${result.stderr}
