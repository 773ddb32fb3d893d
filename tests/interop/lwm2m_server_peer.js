// An independent LwM2M server (lwm2m-node-lib, FIWARE) used to check that the tinymlaas device client interoperates.
//   node lwm2m_server_peer.js PORT OPERATION...
// Waits for one device to register, prints {"registered": endpoint, "payload": its link-format objects}, then runs
// the operations in order on that device and prints one JSON line for each, {"op", "path", "result"} or
// {"op", "path", "error"}, then {"done": true}, and exits. An operation is read:PATH, write:PATH=VALUE,
// execute:PATH or discover:PATH (PATH /object/instance/resource; discover also /object/instance).
'use strict';

var lwm2m = require('lwm2m-node-lib').server;
var port = Number(process.argv[2]), operations = process.argv.slice(3);

var config = {
    port: port,
    lifetimeCheckInterval: 1000,
    udpWindow: 100,
    defaultType: 'Device',
    types: [],
    logLevel: 'FATAL',
    ipProtocol: 'udp4',
    serverProtocol: 'udp4',
    formats: [{name: 'text/plain', value: 0}],
    writeFormat: 'text/plain',
    defaultAcceptFormat: 'text/plain'
};

function emit(obj) {
    console.log(JSON.stringify(obj));
}

function ids(path) {
    return path.split('/').filter(function(s) { return s.length; });
}

function run(serverInfo, device, rest) {
    if (!rest.length) {
        emit({done: true});
        lwm2m.stop(serverInfo, function() { process.exit(0); });
        return;
    }
    var spec = rest[0], kind = spec.split(':')[0], arg = spec.slice(kind.length + 1);
    var path = arg.split('=')[0], value = arg.slice(path.length + 1), p = ids(path);
    function done(err, result) {
        var line = {op: kind, path: path};
        if (err) {
            line.error = err.name + (err.code ? ' ' + err.code : '') + (err.message ? ': ' + err.message : '');
        } else {
            line.result = typeof result === 'string' ? result : JSON.stringify(result);
        }
        emit(line);
        run(serverInfo, device, rest.slice(1));
    }
    if (kind === 'read') {
        lwm2m.read(device.id, p[0], p[1], p[2], done);
    } else if (kind === 'write') {
        lwm2m.write(device.id, p[0], p[1], p[2], value, done);
    } else if (kind === 'execute') {
        lwm2m.execute(device.id, p[0], p[1], p[2], value, done);
    } else if (kind === 'discover') {
        if (p.length === 3) {
            lwm2m.discover(device.id, p[0], p[1], p[2], done);
        } else {
            lwm2m.discover(device.id, p[0], p[1], done);
        }
    } else {
        done({name: 'UnknownOperation', message: spec});
    }
}

lwm2m.start(config, function(err, serverInfo) {
    if (err) {
        emit({error: 'start: ' + (err.message || err.name)});
        process.exit(1);
    }
    lwm2m.setHandler(serverInfo, 'registration', function(endpoint, lifetime, version, binding, payload, callback) {
        callback();
        emit({registered: endpoint, lifetime: lifetime, version: version, payload: payload});
        // the registry holds the device once this handler has answered: look it up on the next turn
        setImmediate(function() {
            lwm2m.getDevice(endpoint, function(err, device) {
                if (err) {
                    emit({error: 'device: ' + (err.message || err.name)});
                    process.exit(1);
                }
                run(serverInfo, device, operations);
            });
        });
    });
    lwm2m.setHandler(serverInfo, 'updateRegistration', function(object, callback) { callback(); });
    lwm2m.setHandler(serverInfo, 'unregistration', function(device, callback) { callback(); });
    emit({listening: port});
});
