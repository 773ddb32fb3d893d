// An independent LwM2M client (lwm2m-node-lib, FIWARE) used to check the tinymlaas server interoperates.
//   node lwm2m_peer.js HOST PORT ENDPOINT [RESOURCE...]
// Prints "registered <location>" once registered, answers the server's requests from its object registry, and
// de-registers on SIGTERM (prints "deregistered"). Each RESOURCE of /3/0 given counts up every 100 ms, so its
// observers are notified (lwm2m-node-lib notifies on every change).
'use strict';

var lwm2m = require('lwm2m-node-lib').client;
var host = process.argv[2], port = process.argv[3], endpoint = process.argv[4], ticking = process.argv.slice(5);

var config = {
    client: {
        lifetime: '60',
        version: '1.0',
        logLevel: 'FATAL',
        observe: {period: 3000},
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{name: 'lightweightm2m/text', value: 1541}],
        writeFormat: 'lightweightm2m/text'
    },
    logLevel: 'FATAL'
};

function fail(what, err) {
    console.log('error ' + what + ': ' + (err && (err.message || err.name || JSON.stringify(err))));
    process.exit(1);
}

lwm2m.init(config);
lwm2m.registry.create('/3/0', function(err) {
    if (err) { fail('create', err); }
    lwm2m.registry.setResource('/3/0', '0', 'FIWARE lwm2m-node-lib', function() {
        lwm2m.registry.setResource('/3/0', '9', '87', function() {
            ticking.forEach(function(id) { lwm2m.registry.setResource('/3/0', id, '0', function() {}); });
            lwm2m.register(host, port, null, endpoint, function(err, info) {
                if (err) { fail('register', err); }
                console.log('registered ' + info.location);
                var count = 0;
                if (ticking.length) {
                    setInterval(function() {
                        count++;
                        ticking.forEach(function(id) { lwm2m.registry.setResource('/3/0', id, String(count), function() {}); });
                    }, 100);
                }
                process.on('SIGTERM', function() {
                    lwm2m.unregister(info, function(err) {
                        console.log(err ? 'error deregister' : 'deregistered');
                        process.exit(0);
                    });
                });
                process.stdin.resume();
            });
        });
    });
});
