// One Apache Ignite 2.x server node for the test rig, run as a single-file
// source program: java <flags> -cp '.tools/jvm/ignite/*' IgniteNode.java k=v ...
//
//   client=PORT      thin-client connector (127.0.0.1, no port range)
//   disc=PORT        this node's discovery port
//   discs=P1,P2,...  every discovery port of the cluster (loopback ip finder)
//   comm=PORT        communication SPI port
//   work=DIR         work directory (persistence lives here too)
//   auth=1           authentication on (needs persistence: the default region
//                    becomes persistent and the node activates the cluster);
//                    the built-in user is ignite/ignite
//   tls=FILE:PASS    the thin-client connector speaks TLS with this PKCS#12
//                    key store (no client certificates)
//   nodes=N          with auth: activate once N server nodes joined
//   tokens=NAME      configure cache NAME as the README asks of a tokens
//                    cache on a cluster: backups = 1, FULL_SYNC writes
//
// Prints "IGNITE-READY" once the node serves clients, then runs until killed.
import java.util.*;
import org.apache.ignite.*;
import org.apache.ignite.cluster.ClusterState;
import org.apache.ignite.configuration.*;
import org.apache.ignite.spi.communication.tcp.TcpCommunicationSpi;
import org.apache.ignite.spi.discovery.tcp.TcpDiscoverySpi;
import org.apache.ignite.spi.discovery.tcp.ipfinder.vm.TcpDiscoveryVmIpFinder;
import org.apache.ignite.ssl.SslContextFactory;

public class IgniteNode {
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = new HashMap<>();
        for (String s : argv) {
            int eq = s.indexOf('=');
            if (eq < 0) throw new IllegalArgumentException("not key=value: " + s);
            a.put(s.substring(0, eq), s.substring(eq + 1));
        }
        int disc = Integer.parseInt(req(a, "disc"));
        List<String> peers = new ArrayList<>();
        for (String p : a.getOrDefault("discs", String.valueOf(disc)).split(","))
            peers.add("127.0.0.1:" + p);

        TcpDiscoveryVmIpFinder finder = new TcpDiscoveryVmIpFinder();
        finder.setAddresses(peers);
        TcpDiscoverySpi discovery = new TcpDiscoverySpi();
        discovery.setLocalAddress("127.0.0.1");
        discovery.setLocalPort(disc);
        discovery.setLocalPortRange(0);
        discovery.setIpFinder(finder);

        TcpCommunicationSpi comm = new TcpCommunicationSpi();
        comm.setLocalAddress("127.0.0.1");
        comm.setLocalPort(Integer.parseInt(req(a, "comm")));
        comm.setLocalPortRange(0);

        ClientConnectorConfiguration client = new ClientConnectorConfiguration();
        client.setHost("127.0.0.1");
        client.setPort(Integer.parseInt(req(a, "client")));
        client.setPortRange(0);
        String tls = a.get("tls");
        if (tls != null) {
            int colon = tls.lastIndexOf(':');
            SslContextFactory ssl = new SslContextFactory();
            ssl.setKeyStoreFilePath(tls.substring(0, colon));
            ssl.setKeyStorePassword(tls.substring(colon + 1).toCharArray());
            ssl.setKeyStoreType("PKCS12");
            ssl.setTrustManagers(SslContextFactory.getDisabledTrustManager());
            client.setSslEnabled(true);
            client.setUseIgniteSslContextFactory(false);
            client.setSslClientAuth(false);
            client.setSslContextFactory(ssl);
        }

        IgniteConfiguration cfg = new IgniteConfiguration();
        cfg.setIgniteInstanceName("sqlcache-test-" + disc);
        cfg.setConsistentId("node-" + disc);
        cfg.setWorkDirectory(req(a, "work"));
        cfg.setDiscoverySpi(discovery);
        cfg.setCommunicationSpi(comm);
        cfg.setClientConnectorConfiguration(client);
        cfg.setLocalHost("127.0.0.1");
        cfg.setMetricsLogFrequency(0);
        cfg.setPeerClassLoadingEnabled(false);
        // Node loss is noticed within seconds, not the default 10 s.
        cfg.setFailureDetectionTimeout(3000);
        cfg.setClientFailureDetectionTimeout(3000);

        boolean auth = "1".equals(a.get("auth"));
        DataStorageConfiguration storage = new DataStorageConfiguration();
        DataRegionConfiguration region = new DataRegionConfiguration();
        region.setName("default");
        region.setMaxSize(256L * 1024 * 1024);
        region.setPersistenceEnabled(auth);
        storage.setDefaultDataRegionConfiguration(region);
        cfg.setDataStorageConfiguration(storage);
        cfg.setAuthenticationEnabled(auth);

        String tokens = a.get("tokens");
        if (tokens != null) {
            CacheConfiguration<Long, Long> tc = new CacheConfiguration<>(tokens);
            tc.setBackups(1);
            tc.setWriteSynchronizationMode(org.apache.ignite.cache.CacheWriteSynchronizationMode.FULL_SYNC);
            cfg.setCacheConfiguration(tc);
        }

        Ignite ignite = Ignition.start(cfg);
        if (auth) {
            int nodes = Integer.parseInt(a.getOrDefault("nodes", "1"));
            while (ignite.cluster().forServers().nodes().size() < nodes) Thread.sleep(100);
            ignite.cluster().state(ClusterState.ACTIVE);
        }
        System.out.println("IGNITE-READY " + ignite.cluster().localNode().id());
        System.out.flush();
        Thread.currentThread().join();
    }

    private static String req(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null) throw new IllegalArgumentException("missing " + k + "=");
        return v;
    }
}
